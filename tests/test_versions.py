"""Agent versions and evaluation criteria (issue 16): spans, per-version series, the criterion label."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import TracerProvider
from structlog.testing import capture_logs

import exporter
from exporter import semconv as sc
from exporter import testing

OP = sc.ATTR_GEN_AI_OPERATION_NAME


def _dropped(cap: testing.Capture, reason: str) -> float:
    return cap.value(sc.EXPORTER_DROPPED.name, reason=reason)


def _root(cap: testing.Capture) -> object:
    return next(s for s in cap.spans() if s.name.startswith("invoke_workflow"))


def test_execution_version_goes_on_the_span_and_the_version_series():
    """execution(version=) sets gen_ai.agent.version and labels every per-version series."""
    with testing.capture() as cap:
        with exporter.execution("invoice", version="v2") as run:
            assert run.version == "v2"
            with run.step("Extract") as step:
                with step.tool_call("llm"):
                    pass
                step.record_usage(input_tokens=30, output_tokens=7)
                step.evaluate("accuracy", score=0.95)
        span = _root(cap)
        assert span.attributes[sc.ATTR_GEN_AI_AGENT_VERSION] == "v2"  # type: ignore[attr-defined]
        v, a = cap.value, {"agent": "invoice", "version": "v2"}
        assert v("agent_info", **a) == 1
        assert v("agent_version_executions_finished_total", **a, status="completed") == 1
        assert v("agent_version_execution_duration_seconds_count", **a) == 1
        assert v("agent_version_execution_evaluation_score_sum", **a) == 0.95
        assert v("agent_version_tool_calls_total", **a, outcome="success") == 1
        assert v("agent_version_tokens_total", **a, type="input") == 30
        assert v("agent_version_tokens_total", **a, type="output") == 7


def test_configured_default_applies_and_an_execution_overrides_it():
    """configure(agent_version=) is the version of executions that name none."""
    with testing.capture(agent_version="abc123") as cap:
        with exporter.execution("invoice"):
            pass
        with exporter.execution("invoice", version="def456"):
            pass
        finished = "agent_version_executions_finished_total"
        assert cap.value(finished, agent="invoice", version="abc123", status="completed") == 1
        assert cap.value(finished, agent="invoice", version="def456", status="completed") == 1
        assert cap.total("agent_info") == 2


def test_no_version_is_unknown_in_metrics_and_absent_from_the_span():
    """Without a version the series say `unknown` (so versions add up to the totals); the span has none."""
    with testing.capture() as cap:
        with exporter.execution("invoice") as run:
            assert run.version is None
        assert sc.ATTR_GEN_AI_AGENT_VERSION not in _root(cap).attributes  # type: ignore[attr-defined]
        assert cap.value("agent_info", agent="invoice", version=sc.UNKNOWN_LABEL_VALUE) == 1
        assert cap.value(
            "agent_version_executions_finished_total", agent="invoice", version="unknown", status="completed"
        ) == cap.total("agent_executions_finished_total")


def test_a_bad_version_is_cleaned_and_counted_not_raised():
    """A non-string version becomes str() and an over-long one is cut, each counted as invalid_name."""
    with testing.capture() as cap:
        with exporter.execution("invoice", version=7) as run:
            assert run.version == "7"
        with exporter.execution("invoice", version="x" * 300) as run:
            assert run.version == "x" * 100
        assert _dropped(cap, "invalid_name") == 2
        assert cap.value("agent_info", agent="invoice", version="7") == 1


def test_bad_configured_version_is_a_value_error():
    """configure(agent_version=) must be a non-empty string: a programmer's error raises at once."""
    exporter.reset()
    for bad in ("", 3, b"v1"):
        try:
            exporter.configure(metrics_port=None, agent_version=bad)  # type: ignore[arg-type]
        except ValueError as exc:
            assert "agent_version" in str(exc)
        else:  # pragma: no cover
            raise AssertionError(f"agent_version={bad!r} was accepted")
        finally:
            exporter.reset()


def test_versions_are_capped_per_agent():
    """Versions past max_label_values are __other__ in metrics and counted as label_overflow."""
    with testing.capture(max_label_values=2) as cap:
        for version in ("a", "b", "c"):
            with exporter.execution("invoice", version=version):
                pass
        finished = "agent_version_executions_finished_total"
        assert cap.value(finished, agent="invoice", version="c", status="completed") == 0
        assert cap.value(finished, agent="invoice", version=sc.OTHER_LABEL_VALUE, status="completed") == 1
        assert _dropped(cap, "label_overflow") >= 1


def test_suspend_and_resume_keep_the_version_of_the_first_part():
    """The carrier holds the version: a process running another version resumes it under the first."""
    with testing.capture(agent_version="new") as cap:
        with exporter.execution("invoice", version="old") as run:
            with run.step("Draft"):
                pass
            carrier = json.loads(json.dumps(run.suspend("approval")))
        assert carrier["version"] == "old"
        with exporter.resume_execution(carrier) as run2:
            assert run2.version == "old"
        finished = "agent_version_executions_finished_total"
        assert cap.value(finished, agent="invoice", version="old", status="completed") == 1
        assert cap.value(finished, agent="invoice", version="new", status="completed") == 0


def test_a_process_that_resumes_an_execution_exports_its_version():
    """Resuming a carrier sets agent_info for its version in the resuming process too."""
    with testing.capture() as first:
        with exporter.execution("invoice", version="old") as run:
            carrier = run.suspend()
        assert first.value("agent_info", agent="invoice", version="old") == 1
    with testing.capture(agent_version="new") as second:  # another process, running a newer version
        with exporter.resume_execution(carrier):
            pass
        assert second.value("agent_info", agent="invoice", version="old") == 1
        assert second.value("agent_info", agent="invoice", version="new") == 0


def test_a_damaged_carrier_version_is_counted_and_the_process_default_used():
    """A carrier version that is not a string counts invalid_carrier; the resumed part takes the default."""
    with testing.capture(agent_version="v9") as cap:
        with exporter.execution("invoice", version="v1") as run:
            carrier = run.suspend()
        carrier["version"] = {"not": "a string"}
        with exporter.resume_execution(carrier) as run2:
            assert run2.version == "v9"
        assert _dropped(cap, "invalid_carrier") == 1


def test_log_events_carry_the_version():
    """Log events of an execution with a version carry a `version` field."""
    with capture_logs() as logs, testing.capture(agent_version="v3"):
        with exporter.execution("invoice"):
            pass
    finished = [e for e in logs if e["event"] == sc.LOG_EXECUTION_FINISHED]
    assert finished and finished[0]["version"] == "v3"


def test_framework_root_span_version_and_the_configured_default():
    """The span bridge reads gen_ai.agent.version off the agent span, else uses configure(agent_version=)."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, agent_version="proc") as cap:
        tracer = tp.get_tracer("some.framework")
        for version in ("span-v", None):
            attrs = {OP: "invoke_agent", sc.ATTR_GEN_AI_AGENT_NAME: "weather"}
            if version:
                attrs[sc.ATTR_GEN_AI_AGENT_VERSION] = version
            with tracer.start_as_current_span("invoke_agent weather", attributes=attrs):
                pass
        finished = "agent_version_executions_finished_total"
        assert cap.value(finished, agent="weather", version="span-v", status="completed") == 1
        assert cap.value(finished, agent="weather", version="proc", status="completed") == 1


def test_evaluations_count_per_criterion():
    """step.evaluate()'s name is the `evaluation` label of agent_evaluations_total."""
    with testing.capture() as cap:
        with exporter.execution("invoice") as run, run.step("Extract") as step:
            step.evaluate("accuracy", passed=True)
            step.evaluate("accuracy", passed=False)
            step.evaluate("completeness", score=0.99)
        v, a = cap.value, {"agent": "invoice", "step": "Extract"}
        assert v("agent_evaluations_total", **a, evaluation="accuracy", result="pass") == 1
        assert v("agent_evaluations_total", **a, evaluation="accuracy", result="fail") == 1
        assert v("agent_evaluations_total", **a, evaluation="completeness", result="pass") == 1


def test_criteria_are_capped_per_agent():
    """Criteria past max_label_values are __other__ in metrics; the span event keeps the real name."""
    with testing.capture(max_label_values=2) as cap:
        with exporter.execution("invoice") as run, run.step("s") as step:
            for name in ("a", "b", "c"):
                step.evaluate(name, passed=True)
        assert (
            cap.value("agent_evaluations_total", agent="invoice", step="s", evaluation="__other__", result="pass") == 1
        )
        names = [
            e.attributes[sc.ATTR_EVALUATION_NAME]  # type: ignore[index]
            for s in cap.spans()
            for e in s.events
            if e.name == sc.EVENT_EVALUATION
        ]
        assert names == ["a", "b", "c"]
        assert _dropped(cap, "label_overflow") == 1


def test_noop_execution_has_a_version():
    """Unconfigured, execution(version=) is the no-op object, with a version attribute like the real one."""
    exporter.reset()
    run = exporter.execution("invoice", version="v1")
    assert run.version is None
