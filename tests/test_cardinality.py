"""The cardinality cap protects Prometheus only: spans and log events keep the real names."""

from __future__ import annotations

from structlog.testing import capture_logs

import exporter
from exporter import semconv as sc
from exporter import testing

OTHER = sc.OTHER_LABEL_VALUE


def test_agent_over_the_cap_keeps_its_name_in_span_and_log():
    """With max_agents=1 the second agent is __other__ in metrics, its own name in its span and log line."""
    with testing.capture(max_agents=1) as cap, capture_logs() as logs:
        with exporter.execution("first", trigger="email"):
            pass
        with exporter.execution("second", trigger="email", task_id="T-2"):
            pass
    span = next(s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == "T-2")
    assert span.name == "invoke_workflow second"
    assert span.attributes[sc.ATTR_GEN_AI_AGENT_NAME] == "second"
    assert span.attributes[sc.ATTR_GEN_AI_WORKFLOW_NAME] == "second"
    (line,) = [e for e in logs if e.get("task_id") == "T-2"]
    assert line["agent"] == "second"
    assert cap.value("agent_executions_finished_total", agent=OTHER, trigger="email", status="completed") == 1
    assert cap.value("agent_executions_finished_total", agent="second", trigger="email", status="completed") == 0


def test_trigger_step_tool_and_path_over_the_cap_keep_their_names():
    """Over max_label_values, trigger, step, tool and path are __other__ in metrics only."""
    with testing.capture(max_label_values=1, log_level="debug") as cap, capture_logs() as logs:
        with exporter.execution("a", trigger="email") as run, run.step("one", tool="t1") as s, s.tool_call("t1"):
            s.branch(selected="left")
        with exporter.execution("a", trigger="webhook", task_id="T-2") as run:
            with run.step("two", tool="t2") as s:
                with s.tool_call("t2"):
                    pass
                s.branch(selected="right", not_selected=["left"])
    spans = [s for s in cap.spans() if s.context.trace_id == _trace_of(cap, "T-2")]
    root = next(s for s in spans if s.attributes.get(sc.ATTR_TASK_ID) == "T-2")
    assert root.attributes[sc.ATTR_TASK_TRIGGER] == "webhook"
    step = next(s for s in spans if s.attributes.get(sc.ATTR_STEP_NAME) is not None)
    assert (step.name, step.attributes[sc.ATTR_STEP_NAME], step.attributes[sc.ATTR_GEN_AI_TOOL_NAME]) == (
        "two",
        "two",
        "t2",
    )
    tool = next(s for s in spans if s.attributes.get(sc.ATTR_GEN_AI_OPERATION_NAME) == sc.OPERATION_EXECUTE_TOOL)
    assert (tool.name, tool.attributes[sc.ATTR_GEN_AI_TOOL_NAME]) == ("execute_tool t2", "t2")
    (branch,) = [e for e in step.events if e.name == sc.EVENT_BRANCH_DECISION]
    assert branch.attributes[sc.ATTR_BRANCH_SELECTED] == "right"
    mine = [e for e in logs if e.get("task_id") == "T-2"]
    assert {e["trigger"] for e in mine} == {"webhook"}
    assert {e.get("step") for e in mine} - {None} == {"two"}
    assert [e["selected"] for e in mine if e["event"] == sc.LOG_BRANCH_DECISION] == ["right"]
    # metrics: the second value of each kind is capped
    assert cap.value("agent_executions_started_total", agent="a", trigger=OTHER) == 1
    assert cap.value("agent_steps_total", agent="a", step=OTHER, status="passed") == 1
    assert cap.value("agent_tool_calls_total", agent="a", tool=OTHER, outcome="success") == 1
    assert cap.value("agent_branch_decisions_total", agent="a", step=OTHER, path=OTHER) == 1


def test_names_in_spans_are_cleaned_masked_and_bounded():
    """A step name keeps what the cap would hide, but secrets are masked and length is bounded."""
    secret = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step(f"call with {secret} " + "x" * 500):
            pass
    (step,) = [s for s in cap.spans() if s.attributes.get(sc.ATTR_STEP_NAME) is not None]
    name = step.attributes[sc.ATTR_STEP_NAME]
    assert secret not in name and secret not in step.name
    assert name.startswith("call with ") and len(name) <= 100


def test_suspended_execution_over_the_cap_resumes_under_its_real_name():
    """The carrier holds the real agent name; the resumed part keeps it and its metrics balance."""
    with testing.capture(max_agents=1) as cap:
        with exporter.execution("first"):
            pass
        with exporter.execution("second", trigger="email") as run:
            carrier = run.suspend()
        assert carrier["agent"] == "second"
        with exporter.resume_execution(carrier):
            pass
        assert cap.value("agent_executions_started_total", agent=OTHER, trigger="email") == 1
        assert cap.value("agent_executions_finished_total", agent=OTHER, trigger="email", status="completed") == 1
    resumed = [s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_STATUS) == "completed"]
    assert resumed[-1].attributes[sc.ATTR_GEN_AI_AGENT_NAME] == "second"


def _trace_of(cap: testing.Capture, task_id: str) -> int:
    return next(s.context.trace_id for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == task_id)
