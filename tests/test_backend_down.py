"""Acceptance 9: a trace backend that is down or hangs never holds up the agent.

Executions must not wait on export (the span worker does, on its own thread, with a timeout);
undelivered spans are counted in `agent_exporter_dropped_total{reason="export_failure"}`; and a
process that exits without calling `exporter.shutdown()` is held at most by the library's
shutdown timeout (1.5 s by default), not by the SDK's 30 s export timeout and retries.
The time bounds are loose sanity bounds (an order of magnitude over what is measured here).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import exporter
from exporter import semconv as sc
from exporter.testing import fresh_registry, metric_value
from tests.servers import OtlpReceiver, free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
EXECUTIONS = 100
SPANS_PER_EXECUTION = 5  # execution + 2 steps + 2 tool calls


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test configures the library itself and leaves it unconfigured."""
    exporter.reset()
    yield
    exporter.reset()


def _workload(n: int, prefix: str) -> float:
    """Run n small executions; return the seconds they took."""
    t0 = time.perf_counter()
    for i in range(n):
        with exporter.execution("invoice", trigger="email", task_id=f"{prefix}-{i}") as run:
            with run.step("Extract", tool="custom_gpt") as step:
                with step.tool_call("custom_gpt"):
                    pass
                step.evaluate("accuracy", score=0.95)
            with run.step("Notify", tool="gmail") as step:
                with step.tool_call("gmail"):
                    pass
    return time.perf_counter() - t0


def _export_failures(registry: object) -> float:
    return metric_value(registry, sc.EXPORTER_DROPPED.name, reason=sc.DropReason.EXPORT_FAILURE.value)  # type: ignore[arg-type]


def _configure(endpoint: str | None, **kwargs: object) -> object:
    registry = fresh_registry()
    exporter.configure(
        service_name="backend-down-test",
        metrics_port=None,
        otlp_endpoint=endpoint,
        registry=registry,
        set_global_tracer_provider=False,
        log_level="warning",
        **kwargs,  # type: ignore[arg-type]
    )
    return registry


@pytest.fixture
def dead_endpoint() -> str:
    """An OTLP URL on a 127.0.0.1 port that nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def hanging_receiver(otlp_receiver: OtlpReceiver) -> Iterator[OtlpReceiver]:
    """The harness receiver holding every request for 30 s (released at teardown)."""
    otlp_receiver.set_mode("hang", seconds=30)
    yield otlp_receiver


def test_dead_endpoint_does_not_block_and_counts_undelivered_spans(dead_endpoint: str) -> None:
    """With nobody listening, executions run at full speed and every span is counted as export_failure."""
    _configure(None)  # baseline: spans made, nothing exported
    baseline = _workload(EXECUTIONS, "base")
    exporter.reset()

    registry = _configure(dead_endpoint, export_timeout=1.0)
    elapsed = _workload(EXECUTIONS, "dead")
    print(
        f"\n{EXECUTIONS} executions: {baseline * 1000:.1f} ms without export, "
        f"{elapsed * 1000:.1f} ms with a dead endpoint"
    )
    assert elapsed < 5.0, f"{EXECUTIONS} executions took {elapsed:.2f}s with a dead endpoint"

    spans = EXECUTIONS * SPANS_PER_EXECUTION
    wait_until(
        lambda: _export_failures(registry) >= spans,
        timeout=20,
        describe=lambda: f"export_failure = {_export_failures(registry)}, want {spans}",
    )
    time.sleep(0.5)  # nothing more may trickle in: each span counted exactly once
    assert _export_failures(registry) == spans
    state = exporter._config.current()
    assert state is not None and state.tracing.processor is not None
    assert state.tracing.processor.exported == 0


def test_shutdown_is_bounded_and_counts_every_span_it_gives_up_on(dead_endpoint: str) -> None:
    """shutdown() returns after its deadline; queued and in-flight spans are each counted once."""
    registry = _configure(dead_endpoint, export_timeout=3.0, shutdown_timeout=0.5)
    n = 200  # 1000 spans: one batch of 512 goes in flight (3 s of retries), the rest stay queued
    _workload(n, "shut")
    t0 = time.perf_counter()
    exporter.shutdown()
    took = time.perf_counter() - t0
    print(f"\nshutdown with {n * SPANS_PER_EXECUTION} spans for a dead endpoint: {took:.2f}s")
    assert took < 2.0, f"shutdown took {took:.2f}s with a 0.5 s shutdown_timeout"
    spans = n * SPANS_PER_EXECUTION
    wait_until(lambda: _export_failures(registry) >= spans, timeout=15)  # the in-flight batch fails later
    time.sleep(0.5)
    assert _export_failures(registry) == spans


def test_hanging_backend_does_not_block_and_recovers(hanging_receiver: OtlpReceiver) -> None:
    """A backend that holds requests costs the agent nothing; spans flow again when it answers."""
    registry = _configure(hanging_receiver.url, export_timeout=1.0)
    elapsed = _workload(EXECUTIONS, "hang")
    print(f"\n{EXECUTIONS} executions with a hanging backend: {elapsed * 1000:.1f} ms")
    assert elapsed < 5.0, f"{EXECUTIONS} executions took {elapsed:.2f}s with a hanging backend"

    spans = EXECUTIONS * SPANS_PER_EXECUTION
    wait_until(
        lambda: _export_failures(registry) >= spans,
        timeout=20,
        describe=lambda: f"export_failure = {_export_failures(registry)}, want {spans}",
    )
    assert _export_failures(registry) == spans
    assert hanging_receiver.counts["hang"] >= 1 and hanging_receiver.spans() == []

    hanging_receiver.set_mode("ok")
    _workload(3, "after")
    exporter.shutdown(timeout=5)
    got = hanging_receiver.wait_for_spans(3 * SPANS_PER_EXECUTION)
    task_ids = {s.attributes.get(sc.ATTR_TASK_ID) for s in got if s.parent_span_id is None}
    assert task_ids == {"after-0", "after-1", "after-2"}
    assert _export_failures(registry) == spans  # the recovered export is not counted as a failure


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import exporter
    exporter.configure(service_name="exit-test", metrics_port=None, otlp_endpoint=sys.argv[1], log_level="off")
    for i in range(200):
        with exporter.execution("invoice", trigger="email", task_id=f"X-{i}") as run:
            with run.step("Extract", tool="custom_gpt") as step:
                with step.tool_call("custom_gpt"):
                    pass
    print(time.time(), flush=True)  # the last thing the agent does; exit follows, no shutdown()
    """
)


@pytest.mark.parametrize("backend", ["dead", "hang"])
def test_process_exit_is_bounded_when_the_backend_is_down(
    backend: str, dead_endpoint: str, otlp_receiver: OtlpReceiver
) -> None:
    """A process exiting without shutdown() with spans queued for a dead/hanging backend exits in < 6 s."""
    if backend == "hang":
        otlp_receiver.set_mode("hang", seconds=60)
        endpoint = otlp_receiver.url
    else:
        endpoint = dead_endpoint
    t0 = time.time()
    child = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    t_exit = time.time()
    assert child.returncode == 0, child.stderr
    last_line = float(child.stdout.strip().splitlines()[-1])
    exit_seconds = t_exit - last_line
    print(f"\nexit with a {backend} backend: {exit_seconds:.2f}s after the last line (whole run {t_exit - t0:.2f}s)")
    assert exit_seconds < 6.0, f"exit took {exit_seconds:.2f}s with a {backend} backend\n{child.stderr[-2000:]}"
    assert "Traceback" not in child.stderr, child.stderr[-2000:]
    if backend == "hang":
        assert otlp_receiver.counts["hang"] >= 1  # the export really was under way at exit
