"""The runtime: all-or-nothing start, complete stop, the bridge attached by housekeeping, isolated
consumers, bounded warnings, one reader at a time. (Exit, fork and auto-instrumentation run in
real processes: tests/test_hosts.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

import exporter
from exporter import _config
from exporter import semconv as sc
from exporter.instrument.noop import NoopExecution
from exporter.pipeline.events import Event, ExecutionFinished
from exporter.pipeline.logs import RateLimitedWarnings
from exporter.tasks import backend as backend_mod
from exporter.testing import fresh_registry, metric_value
from exporter.traces import sampling


def _own_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("agent-exporter"))


@pytest.fixture
def fresh_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    """No global TracerProvider, and OTel willing to set one again (it sets one once per process)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


# --------------------------------------------------------------------------- (6) all or nothing


def test_a_failing_part_leaves_nothing_running_and_raises_valueerror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task store that cannot start: ValueError, and no export thread or sampling policy left, three times."""
    before = _own_threads()

    def refuse(self: Any, url: str) -> None:
        raise backend_mod.StoreError("the store refuses (test)")

    monkeypatch.setattr(backend_mod.Backend, "__init__", refuse)
    for _ in range(3):
        with pytest.raises(ValueError, match="the store refuses"):
            exporter.configure(
                metrics_port=None,
                registry=fresh_registry(),
                otlp_endpoint="http://127.0.0.1:9/v1/traces",
                sample_healthy=0.5,
                span_metrics=True,
                task_store=f"sqlite:///{tmp_path}/t.db",
            )
        assert _config.current() is None
    time.sleep(0.3)  # a thread that was started would still be alive
    assert _own_threads() == before
    assert sampling._active is None


def test_a_busy_metrics_port_leaves_nothing_running(tmp_path: Path) -> None:
    """The metrics port in use: ValueError naming it, and the writer, export and housekeeping threads stopped."""
    import socket

    before = _own_threads()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"127.0.0.1:{port}"):
            exporter.configure(
                metrics_port=port,
                metrics_addr="127.0.0.1",
                registry=fresh_registry(),
                otlp_endpoint="http://127.0.0.1:9/v1/traces",
                span_metrics=True,
                task_store=f"sqlite:///{tmp_path}/t.db",
            )
    time.sleep(0.6)
    assert _own_threads() == before


def test_after_shutdown_nothing_queues_for_the_closed_store(tmp_path: Path) -> None:
    """After shutdown() executions are no-ops: 5,000 of them queue nothing for the closed task store."""
    rt = exporter.configure(metrics_port=None, registry=fresh_registry(), task_store=f"sqlite:///{tmp_path}/t.db")
    sink = rt.tasks
    assert sink is not None
    with exporter.execution("invoice", task_id="before"):
        pass
    exporter.shutdown()
    assert sink.closed
    for i in range(5000):
        with exporter.execution("invoice", task_id=f"after-{i}") as run:
            assert isinstance(run, NoopExecution)
            with run.step("Extract"):
                pass
    assert sink.queued == 0
    assert rt.recorder.tasks is None
    assert exporter.registry() is rt.metrics.registry  # still readable, for a last scrape
    assert _own_threads() == [] or all(not n.startswith("agent-exporter-tasks") for n in _own_threads())


def test_configure_after_shutdown_starts_afresh() -> None:
    """shutdown() then configure(): a new runtime, running, counting from zero."""
    first = exporter.configure(metrics_port=None, registry=fresh_registry())
    exporter.shutdown()
    second = exporter.configure(metrics_port=None, registry=fresh_registry())
    assert second is not first and _config.current() is second
    with exporter.execution("invoice"):
        pass
    assert metric_value(second.metrics.registry, "agent_executions_started_total", agent="invoice",
                        trigger="manual") == 1  # fmt: skip


# --------------------------------------------------------------------------- (5a, 5b) the bridge, wired


def test_an_app_provider_set_after_configure_is_followed_without_a_library_span(fresh_globals: None) -> None:
    """configure(span_metrics=True), then the app's provider, then framework spans only: counted."""
    registry = fresh_registry()
    exporter.configure(metrics_port=None, registry=registry, span_metrics=True, log_level="off")
    app = TracerProvider()
    trace.set_tracer_provider(app)
    time.sleep(1.0)  # the housekeeping thread (every 0.25 s) attaches the bridge
    tracer = app.get_tracer("some.framework")
    with tracer.start_as_current_span("invoke_agent weather", attributes={sc.ATTR_GEN_AI_OPERATION_NAME: "invoke_agent",
                                                                          sc.ATTR_GEN_AI_AGENT_NAME: "weather"}):
        with tracer.start_as_current_span("chat m", attributes={sc.ATTR_GEN_AI_OPERATION_NAME: "chat"}):
            pass
    assert metric_value(registry, "agent_executions_finished_total", agent="weather", trigger="unknown",
                        status="completed") == 1  # fmt: skip


# --------------------------------------------------------------------------- (8) consumers isolated


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)


def test_a_failing_metrics_consumer_hides_the_event_from_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics raising on ExecutionFinished: the log event and the task store still get it; counted."""
    registry = fresh_registry()
    rt = exporter.configure(metrics_port=None, registry=registry)
    sink = _Sink()
    rt.recorder.tasks = sink
    real = rt.metrics.child

    def child(spec: sc.MetricSpec, *labels: str) -> Any:
        if spec is sc.EXECUTIONS_FINISHED:
            raise RuntimeError("metrics bug (test)")
        return real(spec, *labels)

    monkeypatch.setattr(rt.metrics, "child", child)
    with structlog.testing.capture_logs() as logs:
        with exporter.execution("invoice", task_id="T-1"):
            pass
    assert [type(e) for e in sink.events if isinstance(e, ExecutionFinished)] == [ExecutionFinished]
    assert [e["event"] for e in logs if e["event"] == sc.LOG_EXECUTION_FINISHED] == [sc.LOG_EXECUTION_FINISHED]
    assert metric_value(registry, "agent_exporter_dropped_total", reason="internal_error") == 1


# --------------------------------------------------------------------------- (8) warnings bounded


def test_warning_keys_from_user_values_stay_bounded_and_do_not_flood() -> None:
    """5,000 distinct unknown triggers: at most max_keys + 1 keys, and as many log lines, not 5,000."""
    warnings = RateLimitedWarnings(max_keys=100)
    with structlog.testing.capture_logs() as logs:
        for i in range(5000):
            warnings.warn(f"trigger:t{i}", f"unknown trigger 't{i}'")
    assert warnings.keys <= 101
    assert len(logs) == 101


def test_stale_warning_keys_are_forgotten() -> None:
    """Past max_keys, keys older than the interval make room: a new key is logged under its own name."""
    warnings = RateLimitedWarnings(interval=0.05, max_keys=10)
    with structlog.testing.capture_logs() as logs:
        for i in range(10):
            warnings.warn(f"k{i}", f"m{i}")
        time.sleep(0.1)
        assert warnings.warn("new", "fresh") is True
    assert warnings.keys == 1
    assert logs[-1]["detail"] == "fresh"


# --------------------------------------------------------------------------- (8) one reader at a time


def test_task_reads_from_many_threads_share_one_connection_safely(tmp_path: Path) -> None:
    """16 threads cancelling by task id at once: every answer right, no internal error."""
    registry = fresh_registry()
    exporter.configure(metrics_port=None, registry=registry, task_store=f"sqlite:///{tmp_path}/t.db", log_level="off")
    carriers = []
    for i in range(64):
        with exporter.execution("invoice", task_id=f"W-{i}") as run:
            carriers.append(run.suspend("approval"))
    assert exporter.flush(10)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(k, 64, 16):
                results[f"W-{i}"] = exporter.cancel_task(f"W-{i}")
                results[f"missing-{i}"] = exporter.cancel_task(f"missing-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert metric_value(registry, "agent_exporter_dropped_total", reason="internal_error") == 0
    assert sum(results.values()) == 64 and len(results) == 128
    assert metric_value(registry, "agent_executions_finished_total", agent="invoice", trigger="manual",
                        status="cancelled") == 64  # fmt: skip



# --------------------------------------------------------------------------- (4) fork with a lock held


def test_a_fork_while_the_librarys_locks_are_held_does_not_deadlock_the_child() -> None:
    """Locks held by another thread at fork (metrics, warnings, watchdog): the child still records."""
    import os

    from exporter.instrument.watchdog import WATCHDOG

    rt = exporter.configure(metrics_port=None, registry=fresh_registry(), log_level="off")
    held = [rt.metrics._lock, rt.warnings._lock, WATCHDOG._lock]  # forced: held across the fork
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        for lock in held:
            lock.acquire()
        holding.set()
        release.wait(10)
        for lock in held:
            lock.release()

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: a wait (metrics lock), a warning (warnings lock), a deadline (watchdog)
        code = 1
        try:
            with exporter.execution("child", trigger="not-a-trigger", max_duration=5) as run:
                run.wait("approval")
                run.start()
            finished = metric_value(rt.metrics.registry, "agent_executions_finished_total", agent="child",
                                    trigger="not-a-trigger", status="completed")  # fmt: skip
            code = 0 if finished == 1 else 2
        finally:
            os._exit(code)
    release.set()
    t.join()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child deadlocked on a lock held at fork")
    assert os.waitstatus_to_exitcode(status) == 0
