"""Issue 14: every query of the Tasks dashboard runs against a real PostgreSQL with the demo's data.

The demo itself writes the rows (`agent-exporter demo --task-store postgresql://...`): a first run
is stopped after a few seconds (its in-flight executions end cancelled, its suspended approvals are
left waiting in the store, as after a restart), then a second run is still going when the queries
run, so executions are running (with a current step) and waiting too. Healthy traces are sampled
at 0.5 (`--sample-healthy`), so some rows have a trace that was not kept.

Every panel query and every variable query of the generated dashboard is expanded the way Grafana
would (`dashboards.build.expand_sql`: variables as Grafana 11.6 formats them for SQL, All, several
values, the text box, then `$__unixEpochFilter`) and run; each must succeed and return rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from exporter import semconv as sc
from exporter.tasks import schema
from tests.servers import wait_until
from tests.test_demo import Demo

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "agent-tasks.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DEMO_ARGS = ("--rate", "25", "--speed", "30", "--scenario", "failing-agent", "--sample-healthy", "0.5",
             "--console-traces", "--progress-interval", "60")  # fmt: skip
DEMO_AGENTS = {"invoice", "support-email", "daily-report"}


@dataclass
class Live:
    url: str
    dash: dict[str, Any]
    time_from: int
    time_to: int

    def run(self, sql: str) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as conn:
            return conn.execute(sql.encode()).fetchall()  # bytes: psycopg must not read % as placeholders

    def queries(self, **values: str | list[str]) -> list[build.SqlQuery]:
        return list(build.iter_sql_queries(self.dash, time_from=self.time_from, time_to=self.time_to, values=values))

    def panel(self, title: str, **values: str | list[str]) -> list[dict[str, Any]]:
        (q,) = [q for q in self.queries(**values) if q.title == title]
        return self.run(q.sql)


def _count(url: str, where: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema.TABLE} WHERE {where}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0


# Kinds of rows the queries need, waited for while the second demo runs.
NEEDED = {
    "running with a current step": "status = 'in_progress' AND current_step IS NOT NULL",
    "waiting for approval": "status = 'pending' AND waiting_reason = 'approval'",
    "completed with a score and tokens": "status = 'completed' AND score IS NOT NULL AND input_tokens > 0",
    "failed": "status = 'failed' AND cause IS NOT NULL",
    "cancelled": "status = 'cancelled'",
    "trace kept": "trace_kept",
    "trace not kept": "trace_kept = false",
    "completed with a cost and cache reads": "status = 'completed' AND cost_usd > 0 AND cache_read_tokens > 0",
}


@pytest.fixture(scope="module")
def live(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    url = postgres_server.create_database()
    tmp = tmp_path_factory.mktemp("tasks-demo")
    t0 = int(time.time())
    first = Demo(tmp, "--task-store", url, "--duration", "4", "--seed", "1", *DEMO_ARGS, name="first")
    assert first.proc.wait(60) == 0, first.output()[-3000:]
    second = Demo(tmp, "--task-store", url, "--seed", "2", *DEMO_ARGS, name="second")
    try:

        def ready() -> bool:
            if second.proc.poll() is not None:
                raise AssertionError(f"the demo exited:\n{second.output()[-3000:]}")
            return all(_count(url, where) > 0 for where in NEEDED.values())

        wait_until(ready, 60, interval=0.5, describe=lambda: {k: _count(url, w) for k, w in NEEDED.items()})
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        yield Live(url, dash, t0 - 60, int(time.time()) + 60)
    finally:
        second.stop()


# --------------------------------------------------------------------------- the dashboard itself


def test_dashboard_parses_and_every_panel_reads_the_postgresql_data_source() -> None:
    """agent-tasks.json is the generator's output, and every panel, target and variable query uses
    the PostgreSQL data source the provisioning defines (uid agent-tasks)."""
    text = DASHBOARD.read_text(encoding="utf-8")
    assert text == build.render(build.tasks())
    dash = json.loads(text)
    ds_var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert ds_var["type"] == "datasource" and ds_var["query"] == build.POSTGRES_TYPE
    assert ds_var["current"]["value"] == build.TASKS_DATASOURCE_UID
    provisioned = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert provisioned[build.TASKS_DATASOURCE_UID]["type"] == build.POSTGRES_TYPE
    sql_ds = {"type": build.POSTGRES_TYPE, "uid": "${datasource}"}
    assert dash["panels"]
    for panel in dash["panels"]:
        assert panel["datasource"] == sql_ds, panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == sql_ds and t["format"] == "table" and t["rawQuery"] and t["rawSql"]
            assert schema.TABLE in t["rawSql"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == sql_ds


def test_only_the_trace_id_column_links_and_only_to_jaeger() -> None:
    """One data link, on trace_id, to the Jaeger UI's trace page; trace_id is selected only when kept."""
    dash = build.tasks()
    links = []
    for panel in dash["panels"]:
        assert "links" not in panel["fieldConfig"]["defaults"]
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    links.append((panel["title"], override["matcher"]["options"], prop["value"]))
    assert [(title, field) for title, field, _ in links] == [("Recent executions", "trace_id")]
    (url,) = [link["url"] for link in links[0][2]]
    assert url == "${jaeger_url}/trace/${__data.fields.trace_id}"
    sql = next(p for p in dash["panels"] if p["title"] == "Recent executions")["targets"][0]["rawSql"]
    assert "CASE WHEN trace_kept THEN trace_id END AS trace_id" in sql
    # Nowhere else is the raw trace_id selected (the trace text column only tests it for NULL).
    rest = sql.replace("CASE WHEN trace_kept THEN trace_id END AS trace_id", "").replace("WHEN trace_id IS NULL", "")
    assert "trace_id" not in rest


def test_expand_sql_formats_variables_as_grafana_does() -> None:
    """All with a custom allValue is inserted as is; values are quoted and comma-joined; quotes doubled."""
    dash = build.tasks()
    sql = "a IN ($agent) s IN ($status) ${search:sqlstring} $search ${jaeger_url} $__unixEpochFilter(x)"
    out = build.expand_sql(sql, dash, time_from=10, time_to=20, values={"agent": ["a'b", "c"], "search": "O'Brien"})
    assert out == "a IN ('a''b','c') s IN ('__all') 'O''Brien' O''Brien http://localhost:16686 x >= 10 AND x <= 20"
    with pytest.raises(KeyError):
        build.expand_sql("$nope", dash, time_from=0, time_to=1)


# --------------------------------------------------------------------------- the demo's rows


def test_demo_writes_rows_of_every_kind(live: Live) -> None:
    """Running (with its step), waiting for approval, completed, failed, cancelled, kept and not kept."""
    for kind, where in NEEDED.items():
        assert _count(live.url, where) > 0, kind
    assert {r["agent"] for r in live.run(f"SELECT DISTINCT agent FROM {schema.TABLE}")} == DEMO_AGENTS
    # Two runs, two id spaces: the second run did not write over the first one's executions.
    prefixes = live.run(f"SELECT DISTINCT split_part(task_id, '-', 2) AS run FROM {schema.TABLE}")
    assert len(prefixes) == 2


# --------------------------------------------------------------------------- every query


def test_every_panel_query_returns_rows(live: Live) -> None:
    """Each panel query (all filters at All, empty search) succeeds and returns a row with a value."""
    queries = live.queries()
    assert len(queries) == sum(len(p["targets"]) for p in live.dash["panels"]) >= 6
    for q in queries:
        assert "$" not in q.sql, q.sql
        rows = live.run(q.sql)
        assert rows, q.title
        assert any(v not in (None, 0) for v in rows[0].values()), (q.title, rows[0])


def test_every_variable_query_returns_rows(live: Live) -> None:
    """agent lists the demo's three agents; trigger the triggers they ran with."""
    found = {q.title: [next(iter(r.values())) for r in live.run(q.sql)] for q in
             build.iter_sql_variable_queries(live.dash, time_from=live.time_from, time_to=live.time_to)}  # fmt: skip
    assert set(found) == {"variable agent", "variable trigger"}
    assert set(found["variable agent"]) == DEMO_AGENTS and len(found["variable agent"]) == 3
    assert found["variable trigger"] and set(found["variable trigger"]) <= {t.value for t in sc.Trigger}


def test_status_filter_narrows_to_the_chosen_statuses(live: Live) -> None:
    """status=failed: only failed executions, each with a cause; two statuses: both and no others."""
    failed = live.panel("Recent executions", status=["failed"])
    assert failed and {r["status"] for r in failed} == {"failed"}
    assert all(r["cause"] in {c.value for c in sc.FailureCause} for r in failed)
    both = live.panel("Recent executions", status=["completed", "failed"])
    assert {r["status"] for r in both} == {"completed", "failed"}
    for _ in range(5):  # the demo still writes: compare two queries that saw the same rows
        failed = live.panel("Recent executions", status=["failed"])
        (counts,) = live.panel("Executions by status", status=["failed"])
        if counts["failed"] == len(failed):
            break
    assert counts["failed"] == len(failed) and counts["completed"] == 0


def test_agent_trigger_and_search_filters_narrow_every_table(live: Live) -> None:
    """One agent: every table shows that agent only; a trigger; a search on the task id prefix."""
    # The demo is still running: what runs changes between two queries, so the running list is only
    # checked for other agents; the first run's parked approvals (invoice) stay waiting.
    for title in ("Recent executions", "Running now", "Waiting for a human or a worker (oldest first)"):
        invoice = live.panel(title, agent=["invoice"])
        assert {r["agent"] for r in invoice} <= {"invoice"}, title
        if title != "Running now":
            assert invoice, title
    assert len({r["agent"] for r in live.panel("Recent executions")}) == 3
    two = live.panel("Recent executions", agent=["invoice", "daily-report"])
    assert {r["agent"] for r in two} == {"invoice", "daily-report"}
    timer = live.panel("Recent executions", trigger=["timer"])
    assert timer and {r["trigger"] for r in timer} == {"timer"}
    found = live.panel("Recent executions", search="rpt-")  # case-insensitive
    assert found and all(r["task_id"].startswith("RPT-") for r in found)
    assert live.panel("Recent executions", search="o'brien") == []  # a quote is data, not SQL


def test_waiting_list_is_oldest_first_and_includes_parked_approvals(live: Live) -> None:
    """The waiting list starts with the oldest wait; the first run's parked approvals are in it."""
    rows = live.panel("Waiting for a human or a worker (oldest first)")
    waits = [r["waiting_for"] for r in rows]
    assert waits == sorted(waits, reverse=True) and waits[0] > 0
    assert {"approval"} <= {r["reason"] for r in rows}
    first_run = min(r["task_id"].split("-")[1] for r in live.run(f"SELECT task_id FROM {schema.TABLE}"))
    assert any(r["task_id"].split("-")[1] == first_run and r["reason"] == "approval" for r in rows)


def test_running_now_shows_the_current_step(live: Live) -> None:
    rows = live.panel("Running now")
    assert rows and any(r["current_step"] for r in rows)
    assert all(r["running_for"] >= 0 for r in rows)


def test_no_row_links_a_trace_that_was_not_kept(live: Live) -> None:
    """Every trace_id the list returns belongs to a kept trace; not-kept rows say so and carry none."""
    rows = live.panel("Recent executions")
    kept = {r["task_id"]: r["trace_kept"] for r in live.run(f"SELECT task_id, trace_kept FROM {schema.TABLE}")}
    linked = [r for r in rows if r["trace_id"] is not None]
    not_kept = [r for r in rows if r["trace"] == build.NOT_KEPT]
    assert linked and not_kept
    assert all(kept[r["task_id"]] is True for r in linked)
    assert all(r["trace_id"] is None and kept[r["task_id"]] is False for r in not_kept)
    assert all(r["trace"] == "kept" for r in linked)


def test_recent_executions_show_each_rows_cost(live: Live) -> None:
    """The cost column is the row's cost_usd (the demo's models are priced): positive for the
    executions that called a model, and never a cost where the store has none."""
    rows = live.panel("Recent executions")
    stored = {r["task_id"]: r["cost_usd"] for r in live.run(f"SELECT task_id, cost_usd FROM {schema.TABLE}")}
    priced = [r for r in rows if r["cost"] is not None and r["cost"] > 0]
    # (daily-report runs mostly fail before their model call here: the failing-agent scenario)
    assert priced and {"invoice", "support-email"} <= {r["agent"] for r in priced}
    assert all(r["cost"] == stored[r["task_id"]] for r in rows)
    # support emails translated by the demo's self-hosted model: its tokens unpriced, the cost a lower bound
    assert all(r["unpriced_tokens"] == 0 for r in rows if r["agent"] != "support-email")


# --------------------------------------------------------------------------- Grafana's read-only role


def test_grafana_role_reads_the_table_the_agents_create_and_writes_nothing(postgres_server: Any) -> None:
    """deploy/postgres/init-reader.sh (run by the postgres image on a new volume) makes tasks_reader:
    it can run every Tasks query on the table the library creates later, and cannot change it."""
    import os
    import subprocess
    import urllib.parse

    import psycopg

    from exporter.tasks.backend import Backend
    from tests.postgres import postgres_bin

    url = postgres_server.create_database()
    db = urllib.parse.urlsplit(url).path.lstrip("/")
    env = {**os.environ, "PATH": f"{Path(postgres_bin('postgres')).parent}:{os.environ['PATH']}",
           "PGHOST": "127.0.0.1", "PGPORT": str(postgres_server.port),
           "POSTGRES_USER": "postgres", "POSTGRES_DB": db, "TASKS_READER_PASSWORD": "not-used-with-trust"}  # fmt: skip
    done = subprocess.run(["sh", str(ROOT / "deploy" / "postgres" / "init-reader.sh")], env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    backend = Backend(url)  # the library, as the table's owner, creates the schema after the role exists
    backend.connect()
    backend.close()
    reader = url.replace("postgresql://postgres@", "postgresql://tasks_reader@")
    dash = build.tasks()
    now = int(time.time())
    with psycopg.connect(reader) as conn:
        for q in build.iter_sql_queries(dash, time_from=now - 3600, time_to=now):
            conn.execute(q.sql.encode())
        for q in build.iter_sql_variable_queries(dash, time_from=now - 3600, time_to=now):
            conn.execute(q.sql.encode())
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"DELETE FROM {schema.TABLE}")  # noqa: S608


def test_the_selected_task_shows_its_header_input_output_and_steps(live: Live) -> None:
    """Task box set: that execution's row (input and output as stored) and its steps in order; empty:
    the newest execution that ended after a step."""
    (pick,) = live.run(
        f"SELECT t.task_id, t.input, t.output, count(s.step_index) AS n FROM {schema.TABLE} t"  # noqa: S608
        f" JOIN {schema.STEPS_TABLE} s USING (task_id) WHERE t.status = 'completed'"
        " GROUP BY t.task_id, t.input, t.output ORDER BY t.input IS NULL, t.started_at DESC LIMIT 1"
    )
    (row,) = live.panel("Selected task", task=pick["task_id"])
    assert row["task_id"] == pick["task_id"] and row["status"] == "completed"
    assert (row["input"], row["output"]) == (pick["input"], pick["output"])
    steps = live.panel("Its steps", task=pick["task_id"])
    assert [s["step"] for s in steps] == list(range(1, pick["n"] + 1))
    (newest,) = live.run(
        f"SELECT task_id FROM {schema.TABLE} WHERE status IN ('completed', 'failed') AND steps_done > 0"  # noqa: S608
        " ORDER BY started_at DESC LIMIT 1"
    )
    assert [r["task_id"] for r in live.panel("Selected task")] == [newest["task_id"]]
