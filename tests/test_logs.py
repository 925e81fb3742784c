"""structlog events carry trace_id, span_id, task_id and agent, so a log line leads to its trace."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

import exporter
from exporter import semconv as sc
from exporter import testing


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
