"""Issue 24 in the task store: each row carries its execution's cost and cache parts.

The cost is summed over the execution's parts (whichever process ran each), NULL when unknown
(prices off, or only models without a price) and shown by `agent-exporter tasks`. Every figure is
a hand computation from the override prices below. SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import exporter
from exporter.tasks import schema
from exporter.tasks.backend import Backend
from exporter.tasks.query import Filters, columns_for_table, list_tasks

ROOT = Path(__file__).resolve().parent.parent
# USD per million tokens.
PRICES = {"house-large": {"input": 2.0, "output": 8.0, "cache_read": 0.5, "cache_write": 2.5}}


def configure(url: str, **kw: Any) -> None:
    exporter.configure("t", metrics_port=None, registry=CollectorRegistry(), task_store=url, tracing=False, **kw)


def by_id(backend: Backend) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: r for r in backend.fetch(f"SELECT * FROM {schema.TABLE}")}  # noqa: S608


def test_a_row_carries_the_cost_summed_over_its_parts_and_null_when_unknown(store_url: str, store: Backend) -> None:
    """Priced usage with cache parts, across a suspension; only an unpriced model (NULL); priced and
    unpriced (a lower bound); no usage at all ($0, known)."""
    configure(store_url, prices=PRICES)
    run = exporter.start_execution("invoice", "email", task_id="C-1")
    with run.step("extract") as step:
        # 10,000 input of which 6,000 cache read and 1,000 cache write; 500 output
        step.record_usage(10_000, 500, cache_read_tokens=6_000, cache_write_tokens=1_000, model="house-large")
    carrier = run.suspend("approval")
    run.end()
    with exporter.resume_execution(carrier) as resumed, resumed.step("update") as step:
        with step.llm_call("house-large") as call:
            call.record_usage(1_000, 100)
    with exporter.execution("invoice", "email", task_id="C-2") as plain, plain.step("s") as step:
        step.record_usage(700, 70, model="mystery-7b")
    with exporter.execution("invoice", "email", task_id="C-3") as mixed, mixed.step("s") as step:
        step.record_usage(1_000, 0, model="house-large")
        step.record_usage(300, 30, model="mystery-7b")
    with exporter.execution("invoice", "email", task_id="C-4") as idle, idle.step("s"):
        pass
    assert exporter.flush(10)
    rows = by_id(store)
    # part 1: 3,000 uncached x 2 + 6,000 x 0.5 + 1,000 x 2.5 + 500 x 8 = 6,000 + 3,000 + 2,500 + 4,000
    #         = 15,500 per million = $0.0155; part 2: 1,000 x 2 + 100 x 8 = 2,800 -> $0.0028
    c1 = rows["C-1"]
    assert c1["status"] == "completed" and c1["cost_usd"] == pytest.approx(0.0183, abs=1e-12)
    assert (c1["input_tokens"], c1["cache_read_tokens"], c1["cache_write_tokens"]) == (11_000, 6_000, 1_000)
    assert c1["unpriced_tokens"] == 0
    assert rows["C-2"]["cost_usd"] is None and rows["C-2"]["unpriced_tokens"] == 770  # never a silent 0
    assert rows["C-3"]["cost_usd"] == pytest.approx(0.002, abs=1e-12) and rows["C-3"]["unpriced_tokens"] == 330
    assert rows["C-4"]["cost_usd"] == 0.0  # priced, and nothing spent
    listed = {r["task_id"]: r for r in list_tasks(store, Filters())}
    assert listed["C-1"]["cost_usd"] == pytest.approx(0.0183) and listed["C-2"]["cost_usd"] is None
    (costs,) = [dict(zip(listed, cells, strict=True)) for h, cells in columns_for_table(list(listed.values()))
                if h == "COST"]  # fmt: skip
    assert costs == {"C-1": "$0.0183", "C-2": "—", "C-3": "≥$0.0020", "C-4": "$0.0000"}


def test_prices_off_leave_the_cost_unknown_and_count_the_tokens(store_url: str, store: Backend) -> None:
    """configure(prices=False): the row's cost is NULL, its tokens and cache parts are still there."""
    configure(store_url, prices=False)
    with exporter.execution("invoice", "email", task_id="P-1") as run, run.step("s") as step:
        step.record_usage(1_000, 10, cache_read_tokens=400, model="gpt-4o")
    assert exporter.flush(10)
    row = by_id(store)["P-1"]
    assert row["cost_usd"] is None and row["input_tokens"] == 1_000 and row["cache_read_tokens"] == 400
    assert row["unpriced_tokens"] == 0  # not unpriced: not priced at all


def test_a_schema_2_store_gains_the_cost_columns_and_keeps_its_rows(store_url: str) -> None:
    """A store left at version 2 is listed as it is (cost unknown); the writer migrates it (version 4)."""
    old = Backend(store_url)
    conn = old.connect()
    with old._transaction(conn) as cur:
        cur.execute(f"DROP TABLE {schema.TABLE}")
        cur.execute(f"DELETE FROM {schema.VERSION_TABLE}")
        for version in (1, 2):
            for statement in schema.migrations(old.dialect)[version]:
                cur.execute(statement)
            cur.execute(f"INSERT INTO {schema.VERSION_TABLE} (version) VALUES ({version})")
        cur.execute(f"INSERT INTO {schema.TABLE} (task_id, agent, trigger, status, state_at, started_at)"
                    " VALUES ('OLD-1', 'a', 'email', 'completed', 1.0, 1.0)")  # fmt: skip
    old.close()
    reader = Backend(store_url, create=False)
    (row,) = list_tasks(reader, Filters())
    assert row["cost_usd"] is None and row["cache_read_tokens"] == 0
    reader.close()
    writer = Backend(store_url)
    writer.connect()
    assert writer.fetch(f"SELECT max(version) AS v FROM {schema.VERSION_TABLE}")[0]["v"] == schema.SCHEMA_VERSION
    (row,) = writer.fetch(f"SELECT * FROM {schema.TABLE}")  # noqa: S608
    assert row["task_id"] == "OLD-1" and row["cost_usd"] is None and row["unpriced_tokens"] == 0
    writer.close()


def test_the_tasks_command_shows_the_cost_in_the_table_and_in_json(tmp_path: Path) -> None:
    """`agent-exporter tasks`: a COST column ($0.0028, — when unknown); --json has cost_usd and the parts."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    configure(url, prices=PRICES)
    with exporter.execution("invoice", "email", task_id="K-1") as run, run.step("s") as step:
        step.record_usage(1_000, 100, cache_read_tokens=0, model="house-large")  # 2,000 + 800 -> $0.0028
    with exporter.execution("invoice", "email", task_id="K-2") as run, run.step("s") as step:
        step.record_usage(1_000, 100, model="mystery-7b")
    assert exporter.flush(10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "exporter.cli", "tasks", "--store", url]
    table = subprocess.run(cli, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert "COST" in header
    assert "  $0.0028  " in next(line for line in lines if line.startswith("K-1"))
    assert "  —  " in next(line for line in lines if line.startswith("K-2"))
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    rows = {r["task_id"]: r for r in json.loads(out.stdout)}
    assert rows["K-1"]["cost_usd"] == pytest.approx(0.0028) and rows["K-1"]["unpriced_tokens"] == 0
    assert rows["K-2"]["cost_usd"] is None and rows["K-2"]["unpriced_tokens"] == 1_100
    assert rows["K-1"]["cache_read_tokens"] == 0 and rows["K-1"]["cache_write_tokens"] == 0
