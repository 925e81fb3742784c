"""Executions, steps and tool calls: what each records in spans and metrics."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from opentelemetry.trace import StatusCode

import exporter
from exporter import semconv as sc
from exporter import testing


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def test_completed_execution_records_span_tree_and_metrics():
    """A normal exit completes: one execution span, step children in order, tool grandchildren."""
    with testing.capture() as cap:
        with exporter.execution("invoice", trigger="email", task_id="T-1", description="Invoice 42") as run:
            with run.step("Extract", tool="custom_gpt") as s1:
                with s1.tool_call("custom_gpt"):
                    pass
                s1.record_usage(input_tokens=100, output_tokens=20)
            with run.step("Validate") as s2:
                s2.record_usage(input_tokens=5)
        spans = cap.spans()
        (ex,) = by_name(spans, "invoke_workflow invoice")
        steps = [s for s in spans if s.parent is not None and s.parent.span_id == ex.context.span_id]
        assert [s.name for s in sorted(steps, key=lambda s: s.attributes[sc.ATTR_STEP_INDEX])] == [
            "Extract",
            "Validate",
        ]
        (tool,) = by_name(spans, "execute_tool custom_gpt")
        assert tool.parent.span_id == by_name(spans, "Extract")[0].context.span_id
        assert tool.attributes[sc.ATTR_GEN_AI_OPERATION_NAME] == "execute_tool"
        a = ex.attributes
        assert a[sc.ATTR_TASK_ID] == "T-1"
        assert a[sc.ATTR_TASK_STATUS] == "completed"
        assert a[sc.ATTR_TASK_DESCRIPTION] == "Invoice 42"
        assert a[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 105
        assert a[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 20
        assert a[sc.ATTR_GEN_AI_AGENT_NAME] == a[sc.ATTR_GEN_AI_WORKFLOW_NAME] == "invoice"
        assert cap.value("agent_executions_started_total", agent="invoice", trigger="email") == 1
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 1
        assert cap.value("agent_steps_total", agent="invoice", step="Extract", status="passed") == 1
        assert cap.value("agent_tool_calls_total", agent="invoice", tool="custom_gpt", outcome="success") == 1
        assert cap.value("agent_tokens_total", agent="invoice", step="Extract", type="input") == 100
        assert cap.value("agent_executions_in_progress", agent="invoice") == 0
        assert cap.value("agent_execution_duration_seconds_count", agent="invoice", trigger="email",
                         status="completed") == 1


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (TimeoutError("slow"), "timeout"),
        (exporter.ValidationFailure("bad total"), "validation_failure"),
        (exporter.MissingData("no PO number"), "missing_data"),
        (exporter.ToolError("CRM 503"), "tool_error"),
        (KeyError("x"), "error"),
    ],
)
def test_exception_fails_with_cause_and_is_reraised(exc, cause):
    """An exception fails the execution with the cause its type maps to, and passes through."""
    with testing.capture() as cap:
        with pytest.raises(type(exc)):
            with exporter.execution("invoice", trigger="webhook") as run:
                with run.step("Validate"):
                    raise exc
        (ex,) = by_name(cap.spans(), "invoke_workflow invoice")
        assert ex.status.status_code is StatusCode.ERROR
        assert ex.attributes[sc.ATTR_TASK_FAILURE_CAUSE] == cause
        assert ex.attributes[sc.ATTR_TASK_STATUS] == "failed"
        assert by_name(cap.spans(), "Validate")[0].attributes[sc.ATTR_STEP_STATUS] == "failed"
        assert cap.value("agent_execution_failures_total", agent="invoice", trigger="webhook", cause=cause) == 1
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="webhook", status="failed") == 1
        assert cap.value("agent_steps_total", agent="invoice", step="Validate", status="failed") == 1


def test_fail_and_cancel_set_the_outcome():
    """run.fail() records its cause and message; run.cancel() counts as cancelled."""
    with testing.capture() as cap:
        with exporter.execution("a", trigger="manual") as run:
            run.fail("missing_data", "no invoice attached")
        with exporter.execution("a", trigger="manual") as run:
            run.cancel()
        failed, cancelled = by_name(cap.spans(), "invoke_workflow a")
        assert failed.status.description == "no invoice attached"
        assert failed.attributes[sc.ATTR_TASK_FAILURE_CAUSE] == "missing_data"
        assert cancelled.attributes[sc.ATTR_TASK_STATUS] == "cancelled"
        assert cancelled.status.status_code is not StatusCode.ERROR
        assert cap.value("agent_executions_finished_total", agent="a", trigger="manual", status="cancelled") == 1
        assert cap.value("agent_execution_failures_total", agent="a", trigger="manual", cause="missing_data") == 1


def test_tool_call_outcomes():
    """A tool call's outcome comes from its exception: error, timeout, success."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("Call CRM", tool="salesforce") as step:
            for exc in (exporter.ToolError("503"), TimeoutError()):
                with pytest.raises(type(exc)), step.tool_call("salesforce"):
                    raise exc
            with step.tool_call("salesforce", call_id="c-9"):
                pass
        assert cap.value("agent_tool_calls_total", agent="a", tool="salesforce", outcome="error") == 1
        assert cap.value("agent_tool_calls_total", agent="a", tool="salesforce", outcome="timeout") == 1
        assert cap.value("agent_tool_calls_total", agent="a", tool="salesforce", outcome="success") == 1
        assert cap.value("agent_tool_call_duration_seconds_count", agent="a", tool="salesforce") == 3
        calls = by_name(cap.spans(), "execute_tool salesforce")
        assert [c.attributes.get(sc.ATTR_ERROR_TYPE) for c in calls] == ["ToolError", "TimeoutError", None]
        assert calls[2].attributes[sc.ATTR_GEN_AI_TOOL_CALL_ID] == "c-9"
        # The step itself did not raise: it passed.
        assert cap.value("agent_steps_total", agent="a", step="Call CRM", status="passed") == 1


def test_evaluations_and_review_statuses():
    """Evaluations count pass/fail, observe scores, and set failed / needs_review step statuses."""
    with testing.capture(review_threshold=0.8) as cap:
        with exporter.execution("a") as run:
            with run.step("Extract") as s:
                assert s.evaluate("accuracy", score=0.95, explanation="all fields") == "pass"
            with run.step("Classify") as s:
                assert s.evaluate("accuracy", score=0.85) == "fail"  # under the 0.90 default objective
            with run.step("Summarise") as s:
                assert s.evaluate("tone", score=0.5, passed=True) == "pass"  # under review threshold
            with run.step("Route") as s:
                s.flag_for_review("amount near the limit")
        evals = "agent_evaluations_total"
        assert cap.value(evals, agent="a", step="Extract", evaluation="accuracy", result="pass") == 1
        assert cap.value(evals, agent="a", step="Classify", evaluation="accuracy", result="fail") == 1
        assert cap.value("agent_steps_total", agent="a", step="Classify", status="failed") == 1
        assert cap.value("agent_steps_total", agent="a", step="Summarise", status="needs_review") == 1
        assert cap.value("agent_steps_total", agent="a", step="Route", status="needs_review") == 1
        assert cap.value("agent_step_evaluation_score_sum", agent="a", step="Extract") == pytest.approx(0.95)
        ex = by_name(cap.spans(), "invoke_workflow a")[0]
        assert ex.attributes[sc.ATTR_TASK_EVALUATION_SCORE] == pytest.approx((0.95 + 0.85 + 0.5) / 3)
        assert cap.value("agent_execution_evaluation_score_count", agent="a", trigger="manual") == 1
        (ev,) = by_name(cap.spans(), "Extract")[0].events
        assert ev.name == sc.EVENT_EVALUATION
        assert dict(ev.attributes) == {
            sc.ATTR_EVALUATION_NAME: "accuracy",
            sc.ATTR_EVALUATION_SCORE_VALUE: 0.95,
            sc.ATTR_EVALUATION_SCORE_LABEL: "pass",
            sc.ATTR_EVALUATION_EXPLANATION: "all fields",
        }


def test_failed_evaluation_can_mean_needs_review():
    """With evaluation_fail_status='needs_review' a failed evaluation flags rather than fails."""
    with testing.capture(evaluation_fail_status="needs_review") as cap:
        with exporter.execution("a") as run, run.step("Check") as s:
            s.evaluate("criteria", passed=False)
        assert cap.value("agent_steps_total", agent="a", step="Check", status="needs_review") == 1


def test_branch_decision_event_and_counter():
    """A branch decision counts its path and leaves an event with condition and reasoning."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("Route by amount") as s:
            s.branch(selected="auto_approve", not_selected=["human_approval"], condition="amount < 1000",
                     reason="amount is 420")
        assert cap.value("agent_branch_decisions_total", agent="a", step="Route by amount", path="auto_approve") == 1
        (ev,) = by_name(cap.spans(), "Route by amount")[0].events
        assert ev.name == sc.EVENT_BRANCH_DECISION
        assert ev.attributes[sc.ATTR_BRANCH_SELECTED] == "auto_approve"
        assert list(ev.attributes[sc.ATTR_BRANCH_NOT_SELECTED]) == ["human_approval"]
        assert ev.attributes[sc.ATTR_BRANCH_CONDITION] == "amount < 1000"
        assert ev.attributes[sc.ATTR_BRANCH_REASON] == "amount is 420"


async def test_async_execution_and_decorated_steps():
    """`async with` and the @step decorator (sync and async) record steps of the current execution."""

    @exporter.step("Fetch", tool="gmail")
    async def fetch() -> str:
        await asyncio.sleep(0)
        exporter.current_step().evaluate("found", passed=True)
        return "mail"

    @exporter.step()
    def parse(text: str) -> int:
        return len(text)

    with testing.capture() as cap:
        async with exporter.execution("support", trigger="email") as run:
            assert await fetch() == "mail"
            assert parse("abc") == 3
            async with run.step("Reply") as s:
                async with s.tool_call("gmail"):
                    await asyncio.sleep(0)
        assert parse("x") == 1  # outside an execution the function just runs
        names = [s.name for s in cap.spans()]
        assert names.count("Fetch") == 1 and names.count("parse") == 1 and names.count("Reply") == 1
        fetch_span = by_name(cap.spans(), "Fetch")[0]
        assert fetch_span.attributes[sc.ATTR_GEN_AI_TOOL_NAME] == "gmail"
        evals = "agent_evaluations_total"
        assert cap.value(evals, agent="support", step="Fetch", evaluation="found", result="pass") == 1
        assert cap.value("agent_steps_total", agent="support", step="parse", status="passed") == 1


def test_queued_execution_measures_pending_and_excludes_it_from_runtime():
    """Starting pending counts in the pending gauges; the wait is observed, not counted as runtime."""
    with testing.capture() as cap:
        with exporter.execution("a", pending="queued") as run:
            assert cap.value("agent_executions_pending", agent="a", reason="queued") == 1
            assert cap.value("agent_execution_pending_oldest_timestamp_seconds", agent="a",
                             reason="queued") == pytest.approx(time.time(), abs=5)
            assert cap.value("agent_executions_started_total", agent="a", trigger="manual") == 0
            time.sleep(0.3)
            with run.step("Work"):
                pass
            run.wait("approval")
            assert cap.value("agent_executions_pending", agent="a", reason="approval") == 1
            assert cap.value("agent_executions_in_progress", agent="a") == 0
            time.sleep(0.3)
            run.start()
        assert cap.value("agent_executions_pending", agent="a", reason="queued") == 0
        assert cap.value("agent_execution_pending_oldest_timestamp_seconds", agent="a", reason="queued") == 0
        assert cap.value("agent_execution_pending_duration_seconds_count", agent="a", reason="queued") == 1
        assert cap.value("agent_execution_pending_duration_seconds_count", agent="a", reason="approval") == 1
        assert cap.value("agent_execution_pending_duration_seconds_sum", agent="a", reason="queued") >= 0.3
        runtime = cap.value("agent_execution_duration_seconds_sum", agent="a", trigger="manual", status="completed")
        assert runtime < 0.2
        events = [e.name for e in by_name(cap.spans(), "invoke_workflow a")[0].events]
        assert events == ["pending", "resumed", "pending", "resumed"]


def test_suspend_and_resume_continue_the_same_trace():
    """suspend() returns a JSON-able carrier; resume_execution() continues in the same trace."""
    with testing.capture() as cap:
        with exporter.execution("invoice", trigger="email", task_id="T-7") as run:
            with run.step("Extract") as s:
                s.evaluate("accuracy", score=0.9)
                s.record_usage(input_tokens=10, output_tokens=2)
            carrier = run.suspend("approval")
        assert cap.value("agent_executions_in_progress", agent="invoice") == 0
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 0
        carrier = json.loads(json.dumps(carrier))
        carrier["suspended_at"] -= 3600  # approved an hour later
        with exporter.resume_execution(carrier) as run2:
            with run2.step("Update the CRM") as s:
                s.evaluate("accuracy", score=1.0)
        first, second = by_name(cap.spans(), "invoke_workflow invoice")
        assert first.attributes[sc.ATTR_TASK_STATUS] == "pending"
        assert second.context.trace_id == first.context.trace_id
        assert second.parent.span_id == first.context.span_id
        assert second.attributes[sc.ATTR_TASK_ID] == "T-7"
        assert second.attributes[sc.ATTR_TASK_STATUS] == "completed"
        assert second.attributes[sc.ATTR_TASK_EVALUATION_SCORE] == pytest.approx(0.95)
        assert second.attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 10
        assert by_name(cap.spans(), "Update the CRM")[0].attributes[sc.ATTR_STEP_INDEX] == 2
        resumed = [e for e in second.events if e.name == "resumed"][0]
        assert resumed.attributes[sc.ATTR_PENDING_SECONDS] >= 3600
        assert cap.value("agent_executions_started_total", agent="invoice", trigger="email") == 1
        assert cap.value("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 1
        assert cap.value("agent_execution_pending_duration_seconds_sum", agent="invoice", reason="approval") >= 3600
        assert cap.value("agent_execution_duration_seconds_sum", agent="invoice", trigger="email",
                         status="completed") < 60


def test_max_duration_fails_with_timeout_at_exit_and_by_watchdog():
    """Past max_duration an execution fails with cause timeout, even if it never returns."""
    with testing.capture() as cap:
        with exporter.execution("a", max_duration=0.05):
            time.sleep(0.1)
        assert cap.value("agent_execution_failures_total", agent="a", trigger="manual", cause="timeout") == 1
        run = exporter.start_execution("hung", max_duration=0.2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cap.value("agent_executions_finished_total", agent="hung",
                                                        trigger="manual", status="failed") == 0:
            time.sleep(0.05)
        assert cap.value("agent_execution_failures_total", agent="hung", trigger="manual", cause="timeout") == 1
        assert cap.value("agent_executions_in_progress", agent="hung") == 0
        run.end()  # the late exit changes nothing
        assert cap.value("agent_executions_finished_total", agent="hung", trigger="manual", status="failed") == 1
        assert cap.value("agent_executions_finished_total", agent="hung", trigger="manual", status="completed") == 0


def test_objectives_are_exported_per_agent_with_defaults():
    """agent_objective carries configured targets, and the contract's defaults for other agents."""
    with testing.capture(objectives={"invoice": {"completion_ratio": 0.99}}) as cap:
        with exporter.execution("support"):
            pass
        assert cap.value("agent_objective", agent="invoice", objective="completion_ratio") == 0.99
        assert cap.value("agent_objective", agent="invoice", objective="max_runtime_seconds") == 120
        assert cap.value("agent_objective", agent="support", objective="completion_ratio") == 0.95
        assert cap.value("agent_objective", agent="support", objective="max_pending_seconds") == 1800


def test_user_spans_inside_a_step_nest_under_it():
    """Spans the agent makes itself inside a step are children of the step span."""
    with testing.capture() as cap:
        tracer = cap.state.tracing.tracer
        with exporter.execution("a") as run, run.step("Work"):
            with tracer.start_as_current_span("my own span"):
                pass
        mine = by_name(cap.spans(), "my own span")[0]
        assert mine.parent.span_id == by_name(cap.spans(), "Work")[0].context.span_id


def test_watchdog_timeout_fails_open_steps_and_drops_later_calls():
    """When the watchdog fails an execution, its open step is failed (timeout) then; later calls count nothing."""
    with testing.capture() as cap:
        with exporter.execution("hung", max_duration=0.1) as run, run.step("Slow") as s, s.tool_call("api"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not run.ended:
                time.sleep(0.02)
            assert run.ended and run.status == "failed"
            assert cap.value("agent_steps_total", agent="hung", step="Slow", status="failed") == 1
            s.evaluate("accuracy", score=1.0)  # after the end: dropped and counted
            s.record_usage(input_tokens=5)
        assert cap.value("agent_execution_failures_total", agent="hung", trigger="manual", cause="timeout") == 1
        assert cap.value("agent_steps_total", agent="hung", step="Slow", status="passed") == 0
        assert cap.value("agent_steps_total", agent="hung", step="Slow", status="failed") == 1
        assert cap.total("agent_tool_calls_total", agent="hung") == 0
        assert cap.total("agent_evaluations_total", agent="hung") == 0
        assert cap.total("agent_tokens_total", agent="hung") == 0
        # evaluate, record_usage, the tool call's end and the step's end: each dropped and counted
        assert cap.value("agent_exporter_dropped_total", reason="use_after_end") == 4
    (step,) = by_name(cap.spans(), "Slow")
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes[sc.ATTR_STEP_STATUS] == "failed"
    assert step.attributes[sc.ATTR_ERROR_TYPE] == "timeout"
    (root,) = by_name(cap.spans(), "invoke_workflow hung")
    assert step.end_time <= root.end_time  # the step ended before its execution's span
