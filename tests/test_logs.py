"""Log events carry trace_id, span_id, task_id and agent; the library never prints on its own.

Events go to structlog when the application configured it, else to the stdlib logger
`agent_exporter` (silent unless the application configured logging); the library's warnings and
what the OTel SDK logs about the library's own exporter take the same path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.pipeline.logs import LOGGER_NAME
from tests.servers import free_port


def test_execution_step_and_failure_events_carry_ids():
    """execution_finished, step_finished and execution_failed carry the ids of their spans."""
    with testing.capture(log_level="debug") as cap, capture_logs() as logs:
        with exporter.execution("invoice", task_id="T-1") as run, run.step("Extract") as s:
            s.branch(selected="a", not_selected=["b"])
        with pytest.raises(exporter.ToolError), exporter.execution("invoice", task_id="T-2") as run2:
            with run2.step("CRM"):
                raise exporter.ToolError("503")
    spans = {s.name + s.attributes.get(sc.ATTR_TASK_ID, ""): s for s in cap.spans()}
    events = {(e["event"], e["task_id"]): e for e in logs}
    for event, task in [(sc.LOG_EXECUTION_FINISHED, "T-1"), (sc.LOG_STEP_FINISHED, "T-1"),
                        (sc.LOG_EXECUTION_FAILED, "T-2"), (sc.LOG_STEP_FINISHED, "T-2"),
                        (sc.LOG_BRANCH_DECISION, "T-1")]:
        e = events[(event, task)]
        assert e["agent"] == "invoice"
        span = spans["invoke_workflow invoice" + task]
        assert e["trace_id"] == format(span.context.trace_id, "032x")
        assert len(e["span_id"]) == 16
    step_span = next(s for s in cap.spans() if s.name == "Extract")
    assert events[(sc.LOG_STEP_FINISHED, "T-1")]["span_id"] == format(step_span.context.span_id, "016x")
    assert events[(sc.LOG_STEP_FINISHED, "T-1")]["step"] == "Extract"
    failed = events[(sc.LOG_EXECUTION_FAILED, "T-2")]
    assert failed["cause"] == "tool_error" and failed["log_level"] == "warning"


def test_default_level_logs_executions_not_steps():
    """At the default level 'info', execution ends are logged and step ends are not."""
    with testing.capture() as _cap, capture_logs() as logs:
        with exporter.execution("a") as run, run.step("s"):
            pass
    assert [e["event"] for e in logs] == [sc.LOG_EXECUTION_FINISHED]


def test_log_level_off_emits_nothing():
    """log_level='off' emits no library events at all."""
    with testing.capture(log_level="off"), capture_logs() as logs:
        with exporter.execution("a") as run, run.step("s"):
            pass
    assert logs == []


def test_add_trace_context_processor_for_application_logs():
    """The add_trace_context processor puts the current step's ids on the application's own lines."""
    with testing.capture(log_level="off") as cap:
        with exporter.execution("a") as run, run.step("s"):
            event = exporter.add_trace_context(None, "info", {"event": "mine"})
    step = next(s for s in cap.spans() if s.name == "s")
    assert event["trace_id"] == format(step.context.trace_id, "032x")
    assert event["span_id"] == format(step.context.span_id, "016x")
    assert structlog.get_config()  # the library did not replace the application's structlog config


# --------------------------------------------------------------------------- where events go

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = '{"jsonrpc": "2.0", "id": 1, "result": "ready"}\n'

# An agent whose stdout is its protocol (an MCP stdio server, a CLI printing JSON). argv[1] says
# what the application configured: nothing, structlog (to a file) or stdlib logging (to a file).
AGENT_SCRIPT = textwrap.dedent(
    """
    import logging, math, sys
    import structlog
    import exporter

    mode, log_path = sys.argv[1], sys.argv[2]
    if mode == "stdlib":
        logging.basicConfig(filename=log_path, level=logging.DEBUG,
                            format="%(levelname)s %(name)s %(event)s | %(message)s")
    exporter.configure("stdout-agent", metrics_port=None, tracing=False, log_level="debug")
    if mode == "structlog":  # after configure(): the library must notice
        structlog.configure(processors=[structlog.processors.JSONRenderer()],
                            logger_factory=structlog.PrintLoggerFactory(open(log_path, "w")))
    sys.stdout.write(PROTOCOL)
    for i in range(20):
        with exporter.execution("mcp", trigger="carrier-pigeon", task_id=f"T-{i}") as run, run.step("s") as s:
            s.evaluate("x", score=math.nan)
            s.branch(selected="a", not_selected=["b"])
    try:
        with exporter.execution("mcp", task_id="F-1"):
            raise exporter.ToolError("503")
    except exporter.ToolError:
        pass
    sys.stdout.write(PROTOCOL)
    exporter.shutdown()
    """
).replace("PROTOCOL", repr(PROTOCOL))


def _run(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return _run_argv([sys.executable, "-c", script, *args])


def _run_argv(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(argv, capture_output=True, timeout=60, cwd=REPO, env=env)


def test_unconfigured_app_stdout_stays_byte_exact(tmp_path: Path) -> None:
    """With no logging configured by the app, executions write nothing to stdout or stderr."""
    done = _run(AGENT_SCRIPT, "none", str(tmp_path / "unused.log"))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == (PROTOCOL * 2).encode()
    assert done.stderr == b""


def test_app_structlog_configuration_decides(tmp_path: Path) -> None:
    """structlog configured by the app (after configure()) gets the events; stdout stays byte-exact."""
    log = tmp_path / "events.jsonl"
    done = _run(AGENT_SCRIPT, "structlog", str(log))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == (PROTOCOL * 2).encode() and done.stderr == b""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.count(sc.LOG_EXECUTION_FINISHED) == 20 and names.count(sc.LOG_STEP_FINISHED) == 20
    assert sc.LOG_EXPORTER_WARNING in names  # the library's own warnings take the same path


def test_app_stdlib_logging_receives_events_with_their_fields(tmp_path: Path) -> None:
    """stdlib logging configured by the app gets every event on `agent_exporter`, fields on the record."""
    log = tmp_path / "app.log"
    done = _run(AGENT_SCRIPT, "stdlib", str(log))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == (PROTOCOL * 2).encode() and done.stderr == b""
    lines = log.read_text().splitlines()
    finished = [ln for ln in lines if f" {sc.LOG_EXECUTION_FINISHED} | {sc.LOG_EXECUTION_FINISHED} " in ln]
    assert len(finished) == 20 and " task_id=T-0 agent=mcp trigger=carrier-pigeon " in finished[0]
    assert sum(f" {sc.LOG_STEP_FINISHED} " in ln for ln in lines) == 20
    failed = [ln for ln in lines if f" {sc.LOG_EXECUTION_FAILED} " in ln]
    assert len(failed) == 1 and failed[0].startswith("WARNING") and 'error="ToolError: 503"' in failed[0]
    warnings = [ln for ln in lines if f" {sc.LOG_EXPORTER_WARNING} " in ln]
    assert any("carrier-pigeon" in ln for ln in warnings) and all(ln.startswith("WARNING") for ln in warnings)
    assert len(warnings) == 2  # unknown trigger, invalid score: once each, rate-limited


def test_events_follow_structlog_being_configured_later(caplog: pytest.LogCaptureFixture) -> None:
    """Unconfigured structlog: stdlib records with the fields in `extra`; once configured: structlog only."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    with testing.capture():
        with exporter.execution("a", task_id="T-1"):
            pass
        record = next(r for r in caplog.records if r.name == LOGGER_NAME)
        assert record.getMessage().startswith(f"{sc.LOG_EXECUTION_FINISHED} trace_id=")
        assert (record.event, record.agent, record.task_id, record.status) == (  # type: ignore[attr-defined]
            sc.LOG_EXECUTION_FINISHED, "a", "T-1", "completed",
        )  # fmt: skip
        caplog.clear()
        with capture_logs() as logs, exporter.execution("a", task_id="T-2"):
            pass
        assert [e["task_id"] for e in logs] == ["T-2"]
        assert caplog.records == []


def test_log_level_off_silences_the_library_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """log_level='off' silences the rate-limited warnings too (the drops are still counted)."""
    caplog.set_level(logging.DEBUG)
    with testing.capture(log_level="off") as cap:
        with exporter.execution("a", trigger="carrier-pigeon") as run, run.step("s") as s:
            s.evaluate("x", score=math.nan)
        assert cap.value(sc.EXPORTER_DROPPED.name, reason="invalid_score") == 1
    assert caplog.records == []


def test_library_logger_has_a_null_handler() -> None:
    """The `agent_exporter` logger carries a NullHandler, so Python's last-resort handler never prints."""
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger(LOGGER_NAME).handlers)


# --------------------------------------------------------------------------- the SDK's own logs

DEAD_BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys
    import exporter
    exporter.configure("dead-backend", metrics_port=None, otlp_endpoint=sys.argv[1], log_level=sys.argv[2],
                       set_global_tracer_provider=False, export_timeout=0.5)
    for i in range(20):
        with exporter.execution("a", trigger="email") as run, run.step("s"):
            pass
    exporter.shutdown(timeout=5)
    """
)


@pytest.mark.parametrize("log_level", ["off", "info"])
def test_dead_backend_prints_nothing_when_the_app_configured_no_logging(log_level: str) -> None:
    """A dead OTLP endpoint: no SDK 'Transient error'/'Failed to export' and no warning on stderr or stdout."""
    done = _run(DEAD_BACKEND_SCRIPT, f"http://127.0.0.1:{free_port()}", log_level)
    assert done.returncode == 0, done.stderr.decode()
    assert (done.stdout, done.stderr) == (b"", b"")


def _dead_exports(endpoint: str, times: int) -> None:
    """Configure with a dead endpoint and make the library's exporter fail `times` times."""
    state = exporter.configure(
        "dead-backend", metrics_port=None, otlp_endpoint=endpoint, registry=testing.fresh_registry(),
        set_global_tracer_provider=False, export_timeout=0.3,
    )  # fmt: skip
    processor = state.tracing.processor
    assert processor is not None
    for i in range(times):
        with exporter.execution("a", task_id=f"T-{i}"):
            pass
        processor.force_flush(10_000)


def test_exporter_warnings_arrive_on_the_library_logger_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """The library's exporter failing 3 times: its SDK warnings arrive as exporter_warning, once each."""
    caplog.set_level(logging.DEBUG)
    _dead_exports(f"http://127.0.0.1:{free_port()}", 3)
    assert [r.name for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING] == []
    warned = [r for r in caplog.records if getattr(r, "event", None) == sc.LOG_EXPORTER_WARNING]
    assert all(r.name == LOGGER_NAME and r.levelno == logging.WARNING for r in warned)
    sdk = [r for r in warned if r.detail.startswith("span export: ")]  # type: ignore[attr-defined]
    assert sdk
    details = [r.detail.split(" due to")[0].split(" encountered")[0] for r in sdk]  # type: ignore[attr-defined]
    assert len(details) == len(set(details)), details  # rate-limited: each SDK message once
    assert any("Failed to export spans batch" in d for d in details)


def test_the_apps_own_exporter_logs_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    """An OTLP exporter the app created logs as the SDK always does, even with the library's filter on."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}"
    _dead_exports(dead, 1)
    caplog.clear()
    span = TracerProvider().get_tracer("app").start_span("mine")
    span.end()
    assert OTLPSpanExporter(endpoint=dead + "/v1/traces", timeout=0.3).export([span]).name == "FAILURE"  # type: ignore[attr-defined]
    own = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    assert any("Failed to export" in r.getMessage() for r in own)
    assert not [r for r in caplog.records if r.name == LOGGER_NAME]


CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[(info|warning|error|debug) *\] \S")


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["default", "-v"])
def test_demo_prints_executions_and_warnings_in_its_console_format(verbose: list[str]) -> None:
    """`agent-exporter demo` (which configures logging itself) prints every line, SDK warnings included, alike."""
    args = ["--port", str(free_port()), "--duration", "4", "--rate", "20", "--speed", "100", "--progress-interval", "2"]
    argv = [sys.executable, "-m", "exporter.cli", "demo", *args, *verbose]
    done = _run_argv([*argv, "--otlp-endpoint", f"http://127.0.0.1:{free_port()}"])
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out[-3000:]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert [ln for ln in lines if not CONSOLE_LINE.match(ln)] == [], out[-3000:]
    assert any(sc.LOG_EXPORTER_WARNING in ln and "span export: " in ln for ln in lines), out[-3000:]
    finished = [ln for ln in lines if f"] {sc.LOG_EXECUTION_FINISHED} " in ln]
    assert (len(finished) > 10 and all("trace_id=" in ln for ln in finished)) if verbose else finished == []
