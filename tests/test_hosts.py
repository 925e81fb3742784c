"""Real hosts: the library inside processes it does not own — auto-instrumented, exiting, forking.

Each test runs a small program in its own interpreter (a global TracerProvider, an atexit hook
and a fork are per process) against local OTLP receivers and a SQLite task store, and checks
exact numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.tasks.schema import TABLE
from tests.servers import OtlpReceiver, missing

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None,
         timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:  # fmt: skip
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO)
    t0 = time.monotonic()
    proc = subprocess.run(
        [*(prefix or []), sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
        check=False,
    )
    return proc, time.monotonic() - t0


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(f"SELECT task_id, status FROM {TABLE} ORDER BY task_id"))


# --------------------------------------------------------------------------- export feedback loop

LOOP_SCRIPT = """
import sys, time
from opentelemetry.instrumentation.requests import RequestsInstrumentor
RequestsInstrumentor().instrument()  # what `opentelemetry-instrument` does for requests
import exporter
exporter.configure(service_name="loop", metrics_port=None, otlp_endpoint=sys.argv[1],
                   set_global_tracer_provider=True, log_level="off")
with exporter.execution("invoice", trigger="email", task_id="L-1") as run:
    with run.step("Extract"):
        pass
assert exporter.flush(5)
time.sleep(3)  # with the loop, each export's POST is traced and exported again, and again
"""


def test_library_exports_are_not_traced_by_the_apps_http_instrumentation(otlp_receiver: OtlpReceiver) -> None:
    """With requests instrumented and the library's provider global, one execution is one POST of 2 spans."""
    pytest.importorskip("opentelemetry.instrumentation.requests")
    proc, _ = _run(LOOP_SCRIPT, otlp_receiver.endpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]
    posts = otlp_receiver.counts["ok"]
    names = sorted(s.name for s in otlp_receiver.spans())
    print(f"\nOTLP POSTs after one execution: {posts}; spans: {names[:6]}")
    assert posts == 1, f"{posts} POSTs, spans {names[:20]}"
    assert names == ["Extract", "invoke_workflow invoice"]


# --------------------------------------------------------------------------- (a) opentelemetry-instrument

INSTRUMENTED_APP = """
import sqlite3, sys
import requests
import exporter
lib_endpoint, app_url, db = sys.argv[1:4]
exporter.configure(service_name="host-a", metrics_port=None, otlp_endpoint=lib_endpoint,
                   task_store="sqlite:///" + db, log_level="off")
for i in range(6):
    with exporter.execution("invoice", trigger="email", task_id=f"A-{i}") as run:
        with run.step("Extract", tool="custom_gpt"):
            requests.get(app_url + "/health", timeout=5)  # the app's own call: traced, as it should be
            conn = sqlite3.connect(":memory:")  # the app's own SQL: traced too
            conn.cursor().execute("SELECT 1").fetchall()
            conn.close()
print(exporter.flush(5))
"""


def test_under_opentelemetry_instrument_only_the_apps_own_io_is_traced(tmp_path: Path) -> None:
    """Under opentelemetry-instrument (requests, urllib3, sqlite3): the library's 12 spans in one POST,
    6 task rows, and none of its OTLP posts or SQL writes among the app's spans."""
    instrument = shutil.which("opentelemetry-instrument")
    if instrument is None:
        missing("opentelemetry-instrument not installed: pip install -e '.[test]'")
    pytest.importorskip("opentelemetry.instrumentation.sqlite3")
    db = tmp_path / "tasks.db"
    with OtlpReceiver() as lib, OtlpReceiver() as app:
        env = {
            "OTEL_SERVICE_NAME": "host-app",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": app.endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        proc, _ = _run(INSTRUMENTED_APP, lib.endpoint, app.url, str(db), env=env, prefix=[instrument])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == "True"
        app_spans = app.wait_for_spans(12)
        lib_spans = lib.spans()
        posts = lib.counts["ok"]
    lib_port = f":{lib.port}"
    own_io = [
        s for s in app_spans
        if any(lib_port in str(v) for v in s.attributes.values())
        or any(TABLE in str(v) or "agent_exporter_schema" in str(v) for v in s.attributes.values())
    ]  # fmt: skip
    gets = [s for s in app_spans if s.name == "GET"]
    sql = [s for s in app_spans if "SELECT 1" in str(s.attributes.get("db.statement", ""))]
    print(f"\nlibrary: {posts} POST(s), {len(lib_spans)} spans; app: {len(app_spans)} spans "
          f"({len(gets)} GET, {len(sql)} SELECT 1), library I/O among them: {len(own_io)}")  # fmt: skip
    assert posts == 1  # 12 spans are one batch
    assert len(lib_spans) == 12
    assert len(gets) == 6 and len(sql) == 6  # the app's own I/O is traced, under the library's steps
    assert own_io == [], [(s.name, s.attributes) for s in own_io[:5]]
    assert _rows(db) == [(f"A-{i}", "completed") for i in range(6)]


# --------------------------------------------------------------------------- (b) a batch job exits

BATCH_SCRIPT = """
import sys, time
import exporter
exporter.configure(service_name="batch", metrics_port=None, otlp_endpoint=sys.argv[1],
                   task_store="sqlite:///" + sys.argv[2], shutdown_timeout=float(sys.argv[3]), log_level="off")
for i in range(5):
    with exporter.execution("daily-report", trigger="timer", task_id=f"B-{i}") as run:
        with run.step("Query", tool="bigquery"):
            pass
        with run.step("Post", tool="slack"):
            pass
print(time.time(), flush=True)  # the script's last line: no flush(), no shutdown()
"""


@pytest.mark.parametrize("backend", ["up", "dead"])
def test_a_batch_script_that_just_exits_loses_nothing(backend: str, tmp_path: Path) -> None:
    """A script that exits without flush(): 5 rows and 15 spans delivered, exit within shutdown_timeout."""
    db = tmp_path / "tasks.db"
    budget = 2.0
    with OtlpReceiver() as receiver:
        endpoint = receiver.endpoint
        if backend == "dead":
            receiver.set_mode("hang", seconds=30)
        proc, _ = _run(BATCH_SCRIPT, endpoint, str(db), str(budget))
        t_exit = time.time()
        spans = receiver.spans()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""  # a library never writes to the host's stderr
    exit_seconds = t_exit - float(proc.stdout.strip().splitlines()[-1])
    print(f"\nbackend {backend}: exit {exit_seconds:.2f}s after the last line (budget {budget}s); "
          f"{len(spans)} spans at the receiver")  # fmt: skip
    assert _rows(db) == [(f"B-{i}", "completed") for i in range(5)]
    if backend == "up":
        assert len(spans) == 15
        assert exit_seconds < budget  # delivered, not waited out
    assert exit_seconds < budget + 1.5  # the budget plus interpreter teardown


# --------------------------------------------------------------------------- (c) a pre-forking server

PREFORK_SCRIPT = """
import json, os, sys, threading, time
import exporter
from exporter.testing import metric_value
exporter.configure(service_name="prefork", metrics_port=None, otlp_endpoint=sys.argv[1],
                   log_level="off", shutdown_timeout=5)
reg = exporter.registry()

def value(name, **labels):
    return metric_value(reg, name, **labels)

def hung():  # in flight in another thread at fork time; the parent's watchdog times it out
    with exporter.execution("parent-thread", task_id="P-thread", max_duration=0.5):
        time.sleep(1.5)

t = threading.Thread(target=hung)
t.start()
time.sleep(0.1)
pids = []
with exporter.execution("parent-main", task_id="P-main") as main:  # the forking thread's own execution
    for w in range(4):
        pid = os.fork()
        if pid == 0:  # a worker
            for i in range(10):
                with exporter.execution("worker", task_id=f"W{w}-{i}", max_duration=5) as run:
                    with run.step("Handle"):
                        time.sleep(0.01)
            time.sleep(1.2)  # past the inherited execution's deadline
            main.end()  # the parent's execution, ended in the child: not the child's to count
            report = {
                "main_finished": value("agent_executions_finished_total", agent="parent-main", trigger="manual",
                                       status="completed"),
                "worker_finished": value("agent_executions_finished_total", agent="worker", trigger="manual",
                                         status="completed"),
                "thread_failed": value("agent_executions_finished_total", agent="parent-thread", trigger="manual",
                                       status="failed"),
                "in_progress": sum(value("agent_executions_in_progress", agent=a)
                                   for a in ("worker", "parent-thread", "parent-main")),
            }
            exporter.shutdown()
            os.write(1, ("W" + json.dumps(report) + "\\n").encode())  # one write: lines never interleave
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
t.join()
print("P" + json.dumps({
    "thread_failed": value("agent_execution_failures_total", agent="parent-thread", trigger="manual", cause="timeout"),
    "main_finished": value("agent_executions_finished_total", agent="parent-main", trigger="manual",
                           status="completed"),
}), flush=True)
"""


def test_a_preforking_server_counts_each_process_exactly(otlp_receiver: OtlpReceiver) -> None:
    """4 workers forked with executions in flight: 10 each, no inherited timeout, no duplicate span."""
    proc, _ = _run(PREFORK_SCRIPT, otlp_receiver.endpoint, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    workers = [json.loads(line[1:]) for line in lines if line.startswith("W")]
    parent = next(json.loads(line[1:]) for line in lines if line.startswith("P"))
    spans = otlp_receiver.wait_for_spans(2 + 4 * 10 * 2)
    time.sleep(0.5)
    spans = otlp_receiver.spans()
    ids = [s.span_id for s in spans]
    by_task: dict[str, int] = {}
    for s in spans:
        if s.name.startswith("invoke_workflow"):
            task = str(s.attributes.get("task.id"))
            by_task[task] = by_task.get(task, 0) + 1
    print(f"\nworkers: {workers}\nparent: {parent}\nspans: {len(spans)} ({len(set(ids))} distinct)")
    assert workers == [{"main_finished": 0.0, "worker_finished": 10.0, "thread_failed": 0.0, "in_progress": 0.0}] * 4
    assert parent == {"thread_failed": 1.0, "main_finished": 1.0}
    assert len(ids) == len(set(ids)) == 2 + 4 * 10 * 2  # no duplicate span from a child
    assert by_task["P-thread"] == 1 and by_task["P-main"] == 1
