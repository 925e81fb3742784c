"""The suspend/resume carrier: every field that validates is kept, so per-trigger books balance."""

from __future__ import annotations

import json

import pytest

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.instrument.carrier import parse_carrier


def _suspended(cap: testing.Capture) -> dict:
    with exporter.execution("invoice", trigger="email", task_id="T-7", description="Invoice 7") as run:
        with run.step("Extract") as s:
            s.record_usage(input_tokens=10, output_tokens=2)
            s.evaluate("accuracy", score=0.8)
        carrier = run.suspend("approval")
    return json.loads(json.dumps(carrier))


def test_damaged_traceparent_keeps_agent_trigger_and_task_id():
    """A broken traceparent starts a new trace, but the resumed part keeps trigger email and the task id."""
    with testing.capture() as cap:
        carrier = _suspended(cap)
        carrier["traceparent"] = "00-zz-zz-01"
        with exporter.resume_execution(carrier) as run, run.step("Update CRM"):
            pass
        assert cap.value("agent_executions_started_total", agent="invoice", trigger="email") == 1
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 1
        assert cap.total("agent_executions_finished_total", trigger="unknown") == 0
        assert cap.value("agent_exporter_dropped_total", reason="invalid_carrier") == 1
        assert cap.value("agent_tokens_total", agent="invoice", step="Extract", type="input") == 10
    first, resumed = [s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == "T-7"]
    assert resumed.context.trace_id != first.context.trace_id  # the old trace cannot be joined
    assert resumed.attributes[sc.ATTR_TASK_TRIGGER] == "email"
    assert resumed.attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 10  # counts carried over
    assert resumed.attributes[sc.ATTR_TASK_EVALUATION_SCORE] == pytest.approx(0.8)
    step = next(s for s in cap.spans() if s.name == "Update CRM")
    assert step.attributes[sc.ATTR_STEP_INDEX] == 2


def test_damaged_counts_take_defaults_and_the_rest_is_kept():
    """Non-numeric token counts and suspended_at are named and dropped; trace and trigger stay."""
    with testing.capture() as cap:
        carrier = _suspended(cap)
        carrier["tokens_in"] = "many"
        carrier["suspended_at"] = float("nan")
        with exporter.resume_execution(carrier):
            pass
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 1
        assert cap.value("agent_exporter_dropped_total", reason="invalid_carrier") == 1
        assert cap.value("agent_execution_pending_duration_seconds_count", agent="invoice", reason="approval") == 0
    first, resumed = [s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == "T-7"]
    assert resumed.context.trace_id == first.context.trace_id
    assert resumed.attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 0
    assert resumed.attributes[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 2


def test_carrier_without_started_counts_a_start():
    """A carrier that cannot say it was started is counted as a new start: started and finished stay equal."""
    with testing.capture() as cap:
        with exporter.resume_execution({"agent": "a", "trigger": "webhook"}):
            pass
        assert cap.value("agent_executions_started_total", agent="a", trigger="webhook") == 1
        assert cap.value("agent_executions_finished_total", agent="a", trigger="webhook", status="completed") == 1


@pytest.mark.parametrize("carrier", [None, "junk", 42, [1, 2]])
def test_a_carrier_that_is_not_a_mapping_keeps_nothing(carrier):
    """Not a mapping: nothing kept, the whole carrier named as bad."""
    assert parse_carrier(carrier) == ({}, ["carrier"])


def test_parse_names_each_bad_field():
    """parse_carrier names exactly the fields that failed and keeps the others."""
    good, bad = parse_carrier({"v": 1, "agent": "a", "trigger": 5, "steps": -1, "started": True, "description": 3})
    assert good == {"agent": "a", "started": True}
    assert {"trigger", "steps", "description", "traceparent", "task_id"} <= set(bad)
    assert "agent" not in bad and "started" not in bad


def test_carrier_description_is_the_spans_masked_description():
    """The carrier holds the description as the span shows it (masked), and the resumed part's span has the same."""
    secret = "sk-abcdefghijklmnopqrstuvwxyz123456"
    with testing.capture() as cap:
        with exporter.execution("invoice", task_id="T-9", description=f"Invoice 9, token {secret}") as run:
            carrier = run.suspend("approval")
        with exporter.resume_execution(json.loads(json.dumps(carrier))):
            pass
    first, resumed = [s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == "T-9"]
    assert secret not in carrier["description"]
    assert carrier["description"] == first.attributes[sc.ATTR_TASK_DESCRIPTION]
    assert resumed.attributes[sc.ATTR_TASK_DESCRIPTION] == carrier["description"]


def test_declared_steps_are_on_both_parts_spans_and_a_bad_count_is_ignored():
    """execution(steps=3) puts task.steps.total=3 on the span, in the carrier and on the resumed
    part's span; a damaged steps_total is named; steps=0 or "3" is ignored and counted."""
    with testing.capture() as cap:
        with exporter.execution("invoice", task_id="D-1", steps=3) as run:
            carrier = json.loads(json.dumps(run.suspend("approval")))
        assert carrier["steps_total"] == 3
        with exporter.resume_execution(carrier):
            pass
        assert parse_carrier({**carrier, "steps_total": -1})[1] == ["steps_total"]
        for bad in (0, "3", True):
            with exporter.execution("invoice", task_id=f"bad-{bad}", steps=bad) as run:  # type: ignore[arg-type]
                assert run.steps_total is None
        assert cap.value("agent_exporter_dropped_total", reason="invalid_usage") == 3
    parts = [s for s in cap.spans() if s.attributes.get(sc.ATTR_TASK_ID) == "D-1"]
    assert [s.attributes.get(sc.ATTR_TASK_STEPS_TOTAL) for s in parts] == [3, 3]
    assert all(sc.ATTR_TASK_STEPS_TOTAL not in s.attributes for s in cap.spans() if s not in parts)
