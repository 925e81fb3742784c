"""The task store's database dies mid-run (issue 14): executions go on, losses are counted,
writes resume when it returns."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

import exporter
from exporter.tasks.backend import Backend
from exporter.testing import metric_total, metric_value
from tests.postgres import PostgresServer
from tests.servers import wait_until


def _run(agent: str, first: int, n: int, errors: list[BaseException]) -> list[float]:
    """n executions of `agent` (task ids first..first+n-1); the wall time each took."""
    took = []
    for i in range(first, first + n):
        t0 = time.perf_counter()
        try:
            with exporter.execution(agent, "email", task_id=f"{agent}-{i}") as run:
                with run.step("work") as step:
                    step.evaluate("ok", 1.0)
        except BaseException as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)
        took.append(time.perf_counter() - t0)
    return took


def _count(url: str) -> int:
    b = Backend(url)
    try:
        return int(b.fetch("SELECT count(*) AS n FROM agent_tasks")[0]["n"])
    finally:
        b.close()


@pytest.mark.servers
@pytest.mark.timeout(180)
def test_database_killed_mid_run(postgres_server: PostgresServer, postgres_url: str) -> None:
    registry = CollectorRegistry()
    exporter.configure(
        "t", metrics_port=None, tracing=False, registry=registry, task_store=postgres_url, log_level="off"
    )
    state = exporter._config.current()
    assert state is not None and state.tasks is not None
    sink = state.tasks
    sink.max_held_rows = 40  # a small bound, so the outage overflows it

    errors: list[BaseException] = []
    took = _run("before", 0, 30, errors)
    assert exporter.flush(10) and _count(postgres_url) == 30

    postgres_server.kill()
    try:
        # the writer finds out at its next write; executions run on meanwhile
        took += _run("during", 0, 200, errors)
        wait_until(lambda: sink.dropped > 0, timeout=30, interval=0.1)
        took += _run("during", 200, 20, errors)
        assert not exporter.flush(0.5)  # cannot be written now: says so, in bounded time
    finally:
        postgres_server.start()
    wait_until(lambda: exporter.flush(1.0), timeout=60, interval=0.1)
    took += _run("after", 0, 30, errors)
    assert exporter.flush(20)

    assert errors == []
    # every execution was counted by the metrics whatever the database did
    assert metric_total(registry, "agent_executions_finished_total", status="completed") == 280
    dropped = metric_value(registry, "agent_exporter_dropped_total", reason="task_store_unavailable")
    assert dropped == sink.dropped > 0
    b = Backend(postgres_url)
    try:
        by_agent = {
            r["agent"]: int(r["n"]) for r in b.fetch("SELECT agent, count(*) AS n FROM agent_tasks GROUP BY agent")
        }
        statuses = {r["status"] for r in b.fetch("SELECT DISTINCT status FROM agent_tasks WHERE agent = 'after'")}
    finally:
        b.close()
    assert by_agent["before"] == 30 and by_agent["after"] == 30 and statuses == {"completed"}
    # some of the outage was held and written on return, the rest dropped and counted
    assert 0 <= by_agent.get("during", 0) < 220
    print(
        f"\noutage: 220 executions while down, {sink.dropped} row changes dropped, {by_agent.get('during', 0)} rows "
        f"of them written on return; slowest execution {max(took) * 1000:.1f} ms, "
        f"mean {sum(took) / len(took) * 1e3:.2f} ms"
    )


@pytest.mark.timeout(60)
def test_a_queue_that_fills_drops_and_counts(tmp_path: object) -> None:
    """A writer that cannot keep up: events past the queue bound are dropped and counted, never block."""
    registry = CollectorRegistry()
    exporter.configure(
        "t",
        metrics_port=None,
        tracing=False,
        registry=registry,
        task_store=f"sqlite:///{tmp_path}/t.db",
        log_level="off",
    )
    state = exporter._config.current()
    assert state is not None and state.tasks is not None
    sink = state.tasks
    gate = threading.Lock()
    gate.acquire()  # the writer's next write waits until the test lets it go
    write = sink.backend.write

    def slow_write(rows: object, steps: object = ()) -> None:
        with gate:
            write(rows, steps)  # type: ignore[arg-type]

    sink.backend.write = slow_write  # type: ignore[method-assign]
    sink.max_queue = 50
    errors: list[BaseException] = []
    _run("flood", 0, 5, errors)
    time.sleep(sink.flush_interval * 3)  # the writer took those and now waits on the gate
    _run("flood", 5, 100, errors)  # 100 executions x 6 events into a queue of 50
    gate.release()
    assert exporter.flush(20)
    assert errors == []
    dropped = metric_value(registry, "agent_exporter_dropped_total", reason="task_store_full")
    assert dropped == sink.dropped > 0
    assert metric_total(registry, "agent_executions_finished_total", status="completed") == 105
