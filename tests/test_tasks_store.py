"""The task store (issue 14): rows, states across processes, counts equal to the metrics.

Each scenario runs against SQLite (a file shared by processes) and a real PostgreSQL server
(tests/postgres.py): the same writer, the same SQL, two dialects.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import exporter
from exporter.tasks.backend import Backend, StoreMissing
from exporter.tasks.fold import Delta, fold
from exporter.tasks.query import Filters, columns_for_table, list_tasks, parse_since
from exporter.testing import metric_value
from tests import tasks_workload

ROOT = Path(__file__).resolve().parent.parent


def configure(url: str, **kw: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    exporter.configure("t", metrics_port=None, registry=registry, task_store=url, task_store_refresh=0.1, **kw)
    return registry


def park(agent: str, trigger: str = "email", **kw: Any) -> dict[str, Any]:
    """Start an execution and suspend it for approval; `end()` leaves its context (as `with` would)."""
    run = exporter.start_execution(agent, trigger, **kw)
    carrier = run.suspend("approval")
    run.end()
    return carrier


def rows(backend: Backend, **where: str) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = ?" for k in where)
    sql = "SELECT * FROM agent_tasks" + (f" WHERE {clause}" if where else "") + " ORDER BY task_id"
    return backend.fetch(sql, list(where.values()))


# --------------------------------------------------------------------------------------------
# one process
# --------------------------------------------------------------------------------------------


def test_a_row_holds_what_the_task_list_shows(store_url: str, store: Backend) -> None:
    registry = configure(store_url, tracing=False)
    with exporter.execution(
        "invoice", "email", task_id="T-1", description="Invoice 42 from ACME, token sk-abcdefghijklmnopqrstuvwxyz123456"
    ) as run:
        with run.step("extract") as step:
            step.evaluate("accuracy", 0.9)
            step.record_usage(100, 20)
        with run.step("validate") as step:
            step.evaluate("format", 0.7)
            step.record_usage(10, 2)
        run.fail("validation_failure", "the total does not add up")
    assert exporter.flush(10)
    (row,) = rows(store)
    assert row["task_id"] == "T-1" and row["agent"] == "invoice" and row["trigger"] == "email"
    assert row["status"] == "failed" and row["cause"] == "validation_failure"
    assert row["error"] == "the total does not add up"
    assert row["steps_done"] == 2 and row["current_step"] == "validate"
    assert row["input_tokens"] == 110 and row["output_tokens"] == 22
    assert row["score"] == pytest.approx(0.8) and row["score_n"] == 2
    assert row["runtime_seconds"] > 0 and row["ended_at"] >= row["started_at"]
    assert "sk-abcdefghijklmnopqrstuvwxyz123456" not in row["description"]  # masked like captured content
    assert row["description"].startswith("Invoice 42 from ACME")
    assert row["waiting_reason"] is None and row["waiting_since"] is None
    assert (
        metric_value(registry, "agent_executions_finished_total", agent="invoice", trigger="email", status="failed")
        == 1
    )


def test_running_shows_the_current_step_and_waiting_shows_since_when(store_url: str, store: Backend) -> None:
    configure(store_url, tracing=False)
    run = exporter.start_execution("support", "webhook", task_id="R-1")
    step = run.step("classify").__enter__()
    queued = exporter.start_execution("support", "timer", task_id="Q-1", pending="queued")
    before = time.time()
    carrier = park("support", task_id="P-1")
    assert exporter.flush(10)
    by_id = {r["task_id"]: r for r in rows(store)}
    assert by_id["R-1"]["status"] == "in_progress" and by_id["R-1"]["current_step"] == "classify"
    assert by_id["Q-1"]["status"] == "pending" and by_id["Q-1"]["waiting_reason"] == "queued"
    assert by_id["P-1"]["status"] == "pending" and by_id["P-1"]["waiting_reason"] == "approval"
    assert by_id["P-1"]["waiting_since"] == carrier["suspended_at"] >= before
    queued.start()  # ended in the reverse order of entering: each restores the context it found
    queued.end()
    step.__exit__(None, None, None)
    run.end()
    assert exporter.flush(10)
    by_id = {r["task_id"]: r for r in rows(store)}
    assert by_id["R-1"]["status"] == "completed" and by_id["Q-1"]["status"] == "completed"
    assert by_id["P-1"]["status"] == "pending"


def test_waiting_gauges_come_from_the_store(store_url: str) -> None:
    """A parked approval that no process of this one's holds is in its waiting gauges."""
    registry = configure(store_url, tracing=False)
    carriers = [park("hitl") for _ in range(3)]
    exporter.current_execution()  # nothing running here any more
    state = exporter._config.current()
    assert state is not None and state.tasks is not None
    state.tasks.refresh_now()
    assert metric_value(registry, "agent_tasks_waiting", agent="hitl", reason="approval") == 3
    oldest = metric_value(registry, "agent_tasks_waiting_oldest_timestamp_seconds", agent="hitl", reason="approval")
    assert oldest == min(c["suspended_at"] for c in carriers)
    # the in-process gauges no longer see them: they left this process
    assert metric_value(registry, "agent_executions_pending", agent="hitl", reason="approval") == 0
    for c in carriers:
        with exporter.resume_execution(c):
            pass
    state.tasks.refresh_now()
    assert metric_value(registry, "agent_tasks_waiting", agent="hitl", reason="approval") == 0
    assert metric_value(registry, "agent_tasks_waiting_oldest_timestamp_seconds", agent="hitl", reason="approval") == 0


def test_cancel_task_closes_an_abandoned_wait_by_task_id_or_carrier(store_url: str, store: Backend) -> None:
    registry = configure(store_url, tracing=False)
    park("hitl", task_id="lost-carrier")
    kept = park("hitl", task_id="kept-carrier")
    assert exporter.flush(10)
    assert exporter.cancel_task("lost-carrier")
    assert exporter.cancel_task(kept)
    assert not exporter.cancel_task("lost-carrier")  # not waiting any more
    assert not exporter.cancel_task("never-existed")
    assert exporter.flush(10)
    assert {r["task_id"]: r["status"] for r in rows(store)} == {
        "lost-carrier": "cancelled",
        "kept-carrier": "cancelled",
    }
    assert (
        metric_value(registry, "agent_executions_finished_total", agent="hitl", trigger="email", status="cancelled")
        == 2
    )


def test_a_trace_is_listed_only_when_it_was_kept(store_url: str, store: Backend) -> None:
    """sample_healthy=0: healthy traces are dropped, failed ones kept; the list links only the kept."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    configure(store_url, span_exporter=spans, sample_healthy=0.0)
    with exporter.execution("s", "email", task_id="healthy"):
        pass
    with exporter.execution("s", "email", task_id="broken") as run:
        run.fail("tool_error")
    assert exporter.flush(10)
    exported = {s.context.trace_id for s in spans.get_finished_spans()}
    listed = {r["task_id"]: r for r in list_tasks(store, Filters())}
    assert listed["healthy"]["trace_id"] is None and listed["healthy"]["trace"] == "not kept (sampled out)"
    assert listed["broken"]["trace"] == "kept"
    assert int(listed["broken"]["trace_id"], 16) in exported
    raw = {r["task_id"]: r for r in rows(store)}
    assert int(raw["healthy"]["trace_id"], 16) not in exported  # stored for logs, never linked


def test_cli_lists_filters_and_prints_json(store_url: str) -> None:
    configure(store_url, tracing=False)
    for i, (agent, trigger) in enumerate([("a", "email"), ("a", "webhook"), ("b", "email")]):
        with exporter.execution(agent, trigger, task_id=f"id-{i}", description=f"Refund for order {i}") as run:
            if i == 1:
                run.fail("timeout")
    park("b", "manual", task_id="waiting-1")
    assert exporter.flush(10)

    def cli(*args: str) -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "exporter.cli", "tasks", "--store", store_url, "--json", *args],
            capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
        )  # fmt: skip
        return list(json.loads(out.stdout))

    every = cli()
    assert {r["task_id"] for r in every} == {"id-0", "id-1", "id-2", "waiting-1"}
    assert all({"task_id", "agent", "trigger", "status", "trace_id"} <= r.keys() for r in every)
    assert [r["task_id"] for r in cli("--agent", "a")] == ["id-1", "id-0"]  # newest first
    assert [r["task_id"] for r in cli("--status", "failed")] == ["id-1"]
    assert [r["task_id"] for r in cli("--trigger", "email", "--agent", "b")] == ["id-2"]
    assert [r["task_id"] for r in cli("--search", "ORDER 2")] == ["id-2"]  # any case, in the description
    assert [r["task_id"] for r in cli("--search", "waiting")] == ["waiting-1"]  # in the task id
    assert cli("--since", "1h") and not cli("--since", "2999-01-01")
    (waiting,) = cli("--status", "pending")
    assert waiting["waiting_reason"] == "approval" and waiting["waiting_seconds"] >= 0
    table = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "tasks", "--store", store_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    assert table.splitlines()[0].split()[:3] == ["TASK", "ID", "AGENT"] and "approval for" in table


def test_parse_since() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("2026-11-30T08:00") == pytest.approx(1796025600.0)
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday")


# --------------------------------------------------------------------------------------------
# several processes
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_processes_suspending_and_resuming_across_each_other(store_url: str, store: Backend) -> None:
    """3 processes each run 20 executions and park half of them; each resumes another's parked
    ones (some left waiting, some cancelled). The store's waiting counts and oldest waits are
    exact, and its per-status counts equal the processes' summed counters."""
    workers, n = 3, 20
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        first = pool.starmap(tasks_workload.run_and_suspend, [(store_url, w, n) for w in range(workers)])
        assert all(r["flushed"] for r in first)
        # process w resumes the first 6 parked executions of process w+1; the rest stay parked
        resumed_parts = [first[(w + 1) % workers]["carriers"][:6] for w in range(workers)]
        left = [c for w in range(workers) for c in first[(w + 1) % workers]["carriers"][6:]]
        second = pool.starmap(tasks_workload.resume, [(store_url, part, 3) for part in resumed_parts])
        assert all(r["flushed"] for r in second)

    expected_waiting: dict[str, list[float]] = {}
    for c in left:
        expected_waiting.setdefault(c["agent"], []).append(c["suspended_at"])
    summary = {(agent, reason): (count, oldest) for agent, reason, count, oldest in store.waiting()}
    assert summary == {(agent, "approval"): (len(times), min(times)) for agent, times in expected_waiting.items()}
    counted: dict[str, float] = {}
    for part in (*first, *second):
        for status, value in part["finished"].items():
            counted[status] = counted.get(status, 0) + value
    in_store = {
        r["status"]: int(r["n"]) for r in store.fetch("SELECT status, count(*) AS n FROM agent_tasks GROUP BY status")
    }
    assert in_store == {**{s: int(v) for s, v in counted.items() if v}, "pending": len(left)}
    assert sum(in_store.values()) == workers * n
    # the counts each resumed row carries add up across the processes that ran its parts
    resumed_ids = [c["task_id"] for part in resumed_parts for c in part]
    steps = {r["task_id"]: r["steps_done"] for r in rows(store)}
    assert all(steps[t] == 2 for t in resumed_ids)

    # any process with the store exports the same waiting gauges: the rules take max, not sum
    registry = configure(store_url, tracing=False)
    state = exporter._config.current()
    assert state is not None and state.tasks is not None
    state.tasks.refresh_now()
    for agent, times in expected_waiting.items():
        assert metric_value(registry, "agent_tasks_waiting", agent=agent, reason="approval") == len(times)
        assert metric_value(
            registry, "agent_tasks_waiting_oldest_timestamp_seconds", agent=agent, reason="approval"
        ) == min(times)


def test_late_writes_from_a_slow_process_do_not_undo_a_newer_state(store: Backend) -> None:
    """The process that suspended may write after the one that resumed: the newer state wins,
    the counts of both add up."""
    from exporter.pipeline.events import (
        ExecutionFinished,
        ExecutionRef,
        ExecutionRunning,
        ExecutionSuspended,
        StepFinished,
    )

    ref = ExecutionRef("a", "email", "X-1")
    store.connect()
    a: dict[str, Delta] = {}
    fold([(10.0, ExecutionRunning(ref, True)), (11.0, StepFinished(ref, "s", "passed", 1.0)),
          (12.0, ExecutionSuspended(ref, "approval", 12.0))], a)  # fmt: skip
    b: dict[str, Delta] = {}
    fold([(50.0, ExecutionRunning(ref, True)), (51.0, StepFinished(ref, "t", "passed", 1.0)),
          (52.0, ExecutionFinished(ref, "completed", None, 2.0, None))], b)  # fmt: skip
    store.write([d.row() for d in b.values()])  # the resuming process writes first
    store.write([d.row() for d in a.values()])
    (row,) = rows(store)
    assert row["status"] == "completed" and row["waiting_reason"] is None and row["ended_at"] == 52.0
    assert row["steps_done"] == 2 and row["started_at"] == 10.0


@pytest.mark.parametrize(
    "url",
    ["mysql://db/x", "sqlite://", "sqlite:///", "postgresql:///nohost", 42, ""],
)
def test_a_store_url_that_cannot_work_is_a_value_error_at_configure(url: object) -> None:
    with pytest.raises(ValueError, match="task_store"):
        exporter.configure(metrics_port=None, task_store=url)  # type: ignore[arg-type]
    assert exporter._config.current() is None


def test_without_a_store_nothing_listens_and_no_step_event_is_made() -> None:
    exporter.configure(metrics_port=None, tracing=False)
    state = exporter._config.current()
    assert state is not None and state.tasks is None and state.recorder.tasks is None


def test_a_trace_made_but_exported_nowhere_is_not_linked(
    store_url: str, store: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No endpoint, no provider of the app's, no OTEL_* variables: spans have ids but go nowhere."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    configure(store_url)
    with exporter.execution("s", "email", task_id="nowhere"):
        pass
    assert exporter.flush(10)
    (row,) = rows(store)
    assert row["trace_id"] is not None and row["trace_kept"] is None
    (listed,) = list_tasks(store, Filters())
    assert listed["trace_id"] is None and listed["trace"] == "not exported by agent-exporter"


def test_a_row_carries_the_agent_version(store_url: str, store: Backend) -> None:
    """The version of issue 16 reaches the list: per execution, else the process default."""
    configure(store_url, tracing=False, agent_version="v1")
    with exporter.execution("a", "email", task_id="default"):
        pass
    with exporter.execution("a", "email", task_id="canary", version="v2"):
        pass
    assert exporter.flush(10)
    assert {r["task_id"]: r["version"] for r in rows(store)} == {"default": "v1", "canary": "v2"}


CRASH_AFTER_SUSPEND = """
import json, os, sys, time
import exporter
exporter.configure("t", metrics_port=None, tracing=False, task_store=sys.argv[1], log_level="off")
tasks = exporter._config.current().tasks
tasks.refresh_now()  # connected, schema made: what follows times only the suspension's write
tasks.flush_interval = 60.0  # the writer's own schedule can no longer write it in time
time.sleep(0.7)  # (its current 0.5 s wait ends; the next is 60 s)
with exporter.execution("hitl", "email", task_id="crashed") as run:
    with run.step("draft"):
        pass
    carrier = run.suspend("approval")
print(json.dumps(carrier), flush=True)
time.sleep(1.0)  # well before the writer's next cycle of its own
os._exit(9)  # a crash: no flush, no shutdown, no atexit
"""


def test_a_crash_right_after_suspend_loses_nothing(store_url: str, store: Backend) -> None:
    """The process that suspended dies at once: the row says waiting, and any process resumes it."""
    out = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_SUSPEND, store_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 9, out.stderr
    carrier = json.loads(out.stdout)
    (row,) = rows(store)
    assert row["status"] == "pending" and row["waiting_since"] == carrier["suspended_at"]
    assert row["steps_done"] == 1
    configure(store_url, tracing=False)
    with exporter.resume_execution(carrier) as run:
        with run.step("send"):
            pass
    assert exporter.flush(10)
    (row,) = rows(store)
    assert row["status"] == "completed" and row["steps_done"] == 2 and row["waiting_reason"] is None


# --------------------------------------------------------------------------------------------
# issue 23: reading never creates a store; declared steps; what the table shows
# --------------------------------------------------------------------------------------------


def tasks_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`agent-exporter tasks ...` run from `cwd`, importing this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", "tasks", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_the_tasks_command_creates_no_store_and_names_the_path_it_looked_at(tmp_path: Path) -> None:
    """A SQLite store that is not there is exit 1 naming the absolute path (and the spelling), with
    or without --cancel; an empty file is not made a store; nothing is created anywhere."""
    cwd = tmp_path.resolve()
    rel = tasks_cli(cwd, "--store", "sqlite:///var/lib/agent/tasks.db")
    assert rel.returncode == 1 and rel.stdout == ""
    assert f"no task store at {cwd}/var/lib/agent/tasks.db" in rel.stderr
    assert "the absolute /var/lib/agent/tasks.db is sqlite:////var/lib/agent/tasks.db" in rel.stderr
    absent = cwd / "elsewhere" / "tasks.db"
    for extra in ((), ("--cancel", "T-1")):
        out = tasks_cli(cwd, "--store", f"sqlite:///{absent}", *extra)
        assert out.returncode == 1 and f"no task store at {absent}" in out.stderr, out.stderr
    (cwd / "empty.db").touch()
    empty = tasks_cli(cwd, "--store", f"sqlite:///{cwd / 'empty.db'}")
    assert empty.returncode == 1 and "has no agent_tasks table" in empty.stderr
    assert [p.name for p in cwd.rglob("*")] == ["empty.db"] and (cwd / "empty.db").stat().st_size == 0


def test_a_reader_finds_no_store_where_none_was_written_and_leaves_it_so(store_url: str) -> None:
    """Backend(create=False) raises StoreMissing on a fresh database or a missing file, twice (it
    created nothing the first time); once the library has written there, it reads."""
    for _ in range(2):
        reader = Backend(store_url, create=False)
        with pytest.raises(StoreMissing):
            reader.connect()
        reader.close()
    writer = Backend(store_url)
    writer.connect()
    writer.close()
    reader = Backend(store_url, create=False)
    assert list_tasks(reader, Filters()) == []
    reader.close()


def test_declared_steps_reach_the_row_across_a_suspension_and_show_as_step_k_of_n(
    store_url: str, store: Backend
) -> None:
    """execution(steps=4): the row keeps 4 through suspend/resume in another part; the table says
    "step 3 of 4" after three steps, "step 1 of 2" while the first of two runs; an execution that
    declared none shows its count alone."""
    configure(store_url, tracing=False)
    run = exporter.start_execution("invoice", "email", task_id="S-1", steps=4)
    for name in ("extract", "validate"):
        with run.step(name):
            pass
    carrier = run.suspend("approval")
    run.end()
    assert carrier["steps_total"] == 4
    with exporter.resume_execution(carrier) as resumed, resumed.step("update"):
        assert resumed.steps_total == 4
    with exporter.execution("invoice", "email", task_id="S-2") as plain, plain.step("only"):
        pass
    running = exporter.start_execution("invoice", "email", task_id="S-3", steps=2)
    step = running.step("first").__enter__()
    assert exporter.flush(10)
    by_id = {r["task_id"]: r for r in rows(store)}
    assert by_id["S-1"]["steps_total"] == 4 and by_id["S-1"]["steps_done"] == 3
    assert by_id["S-2"]["steps_total"] is None
    listed = {r["task_id"]: r for r in list_tasks(store, Filters())}
    (steps,) = [cells for header, cells in columns_for_table(list(listed.values())) if header == "STEPS"]
    step.__exit__(None, None, None)
    running.end()
    assert sorted(steps) == ["1", "step 1 of 2", "step 3 of 4"]  # S-3 runs its first step


def test_a_schema_1_store_is_read_as_it_is_and_migrated_by_the_writer(store_url: str) -> None:
    """A store left at schema version 1 lists its rows (no steps declared) without being changed by
    the reader; the library's writer adds the column and keeps the rows."""
    from exporter.tasks import schema

    old = Backend(store_url)
    old.connect()  # today's schema: take it back to version 1, as an older library left it
    old.fetch("SELECT 1")
    conn = old.connect()
    with old._transaction(conn) as cur:
        cur.execute(f"DROP TABLE {schema.TABLE}")
        cur.execute(f"DELETE FROM {schema.VERSION_TABLE}")
        for statement in schema.migrations(old.dialect)[1]:
            cur.execute(statement)
        cur.execute(f"INSERT INTO {schema.VERSION_TABLE} (version) VALUES (1)")
        cur.execute(f"INSERT INTO {schema.TABLE} (task_id, agent, trigger, status, state_at, started_at)"
                    " VALUES ('OLD-1', 'a', 'email', 'completed', 1.0, 1.0)")  # fmt: skip
    old.close()
    reader = Backend(store_url, create=False)
    (row,) = list_tasks(reader, Filters())
    assert row["task_id"] == "OLD-1" and row["steps_total"] is None
    assert reader.fetch(f"SELECT max(version) AS v FROM {schema.VERSION_TABLE}")[0]["v"] == 1
    reader.close()
    writer = Backend(store_url)
    writer.connect()
    assert writer.fetch(f"SELECT max(version) AS v FROM {schema.VERSION_TABLE}")[0]["v"] == schema.SCHEMA_VERSION
    assert [(r["task_id"], r["steps_total"]) for r in rows(writer)] == [("OLD-1", None)]
    writer.close()


def test_the_table_shows_description_error_and_how_long_a_running_execution_has_run(tmp_path: Path) -> None:
    """The table has a one-line shortened description and error, and "N (running)" as the runtime of
    an execution still running."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    configure(url, tracing=False)
    long = "Process invoice INV-7 from ACME Corporation,\nall 14 pages of it, with the purchase order attached"
    with exporter.execution("invoice", "email", task_id="F-1", description=long) as run:
        run.fail("tool_error", "salesforce answered 503 Service Unavailable three times; " + "x" * 100)
    running = exporter.start_execution("invoice", "email", task_id="R-1", description="short one")
    time.sleep(0.2)
    assert exporter.flush(10)
    out = tasks_cli(tmp_path, "--store", url)
    running.end()
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    assert "DESCRIPTION" in header and "ERROR" in header
    failed = next(line for line in lines if line.startswith("F-1"))
    assert "Process invoice INV-7 from ACME Corpora…  " in failed  # 40 characters, one line
    assert "salesforce answered 503 Service Unavailable three times; xx…" in failed and "x" * 61 not in failed
    running_line = next(line for line in lines if line.startswith("R-1"))
    assert re.search(r"  \d+\.\d \(running\)  ", running_line) and "short one" in running_line
