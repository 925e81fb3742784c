"""Bad input never raises into the agent, and every correction or drop is counted.

Each test states the documented outcome (docs/telemetry.md, "Dropped and corrected telemetry").
"""

from __future__ import annotations

import logging
import math

import pytest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

import exporter
from exporter import semconv as sc
from exporter import testing


def dropped(cap, reason: str) -> float:
    return cap.value("agent_exporter_dropped_total", reason=reason)


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, -0.1, 101, "high", None, True])
def test_invalid_scores_are_not_observed_and_are_counted(score):
    """NaN, inf, negative, > 100 or non-numeric scores: not observed, counted as invalid_score."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.evaluate("accuracy", score=score)
        assert cap.value("agent_step_evaluation_score_count", agent="a", step="s") == 0
        assert dropped(cap, "invalid_score") == 1
        # The exposition stays parseable (a NaN in a histogram _sum would break OpenMetrics).
        list(parse_openmetrics(openmetrics_latest(cap.registry).decode()))


def test_percentage_score_is_divided_by_100_and_counted():
    """A score of 95 is taken for 95 %: recorded as 0.95, counted as score_corrected."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            assert s.evaluate("accuracy", score=95) == "pass"
        assert cap.value("agent_step_evaluation_score_sum", agent="a", step="s") == pytest.approx(0.95)
        assert dropped(cap, "score_corrected") == 1


def test_invalid_score_with_passed_still_counts_the_result():
    """An invalid score with passed=True still counts the pass."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.evaluate("accuracy", score=math.nan, passed=True)
        assert cap.value("agent_evaluations_total", agent="a", step="s", evaluation="accuracy", result="pass") == 1
        assert dropped(cap, "invalid_score") == 1


def test_unknown_trigger_is_kept_and_warned_once(caplog):
    """An unknown trigger is recorded as given, with one warning."""
    caplog.set_level(logging.WARNING, logger="agent_exporter")
    with testing.capture() as cap:
        for _ in range(3):
            with exporter.execution("a", trigger="carrier-pigeon"):
                pass
        assert cap.value("agent_executions_started_total", agent="a", trigger="carrier-pigeon") == 3
        assert sum("carrier-pigeon" in r.getMessage() for r in caplog.records) == 1


def test_unknown_cause_becomes_error_and_is_counted():
    """run.fail() with an unknown cause records 'error', keeps the given cause in the message."""
    with testing.capture() as cap:
        with exporter.execution("a") as run:
            run.fail("cosmic_rays", "bit flip")
        assert cap.value("agent_execution_failures_total", agent="a", trigger="manual", cause="error") == 1
        assert dropped(cap, "unknown_cause") == 1
        (span,) = cap.spans()
        assert "cosmic_rays" in span.status.description


def test_unknown_pending_reason_and_step_status():
    """An unknown pending reason becomes 'queued'; an unknown step status is ignored; both counted."""
    with testing.capture() as cap:
        with exporter.execution("a", pending="lunch") as run, run.step("s") as s:
            s.set_status("sort-of")
        assert cap.value("agent_execution_pending_duration_seconds_count", agent="a", reason="queued") == 1
        assert cap.value("agent_steps_total", agent="a", step="s", status="passed") == 1
        assert dropped(cap, "unknown_reason") == 1
        assert dropped(cap, "unknown_status") == 1


@pytest.mark.parametrize(("name", "label"), [(42, "42"), ("", "unknown"), ("  ", "unknown"), ("x" * 300, "x" * 100)])
def test_non_string_empty_and_long_names_are_coerced(name, label):
    """Names that are not strings, empty or over 100 characters are coerced, and counted."""
    with testing.capture() as cap:
        with exporter.execution(name) as run, run.step(name):
            pass
        assert cap.value("agent_steps_total", agent=label, step=label, status="passed") == 1
        assert dropped(cap, "invalid_name") >= 2


def test_ten_thousand_step_names_are_capped_per_agent():
    """10,000 distinct step names: 100 kept per agent, the rest go to __other__ and are counted."""
    with testing.capture() as cap:
        with exporter.execution("a") as run:
            for i in range(10_000):
                with run.step(f"step-{i}"):
                    pass
        text = openmetrics_latest(cap.registry).decode()
        steps = {f.name: f for f in parse_openmetrics(text)}["agent_steps"]
        labels = {s.labels["step"] for s in steps.samples}
        assert len(labels) == 101 and sc.OTHER_LABEL_VALUE in labels
        assert cap.value("agent_steps_total", agent="a", step="__other__", status="passed") == 9_900
        assert dropped(cap, "label_overflow") == 9_900
        # Another agent has its own budget.
        with exporter.execution("b") as run, run.step("step-9999"):
            pass
        assert cap.value("agent_steps_total", agent="b", step="step-9999", status="passed") == 1


def test_one_megabyte_output_is_truncated_and_counted():
    """A 1 MB output is cut to max_content_bytes with a marker, and counted."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_output("x" * 1_000_000)
        (step,) = [sp for sp in cap.spans() if sp.name == "s"]
        out = step.attributes[sc.ATTR_STEP_OUTPUT]
        assert len(out.encode()) <= 4096 and "truncated" in out
        assert dropped(cap, "content_truncated") == 1


def test_unserialisable_and_self_referencing_objects():
    """An object JSON cannot hold becomes its repr(); a cycle becomes <cycle>; both recorded."""

    class Opaque:
        __slots__ = ()

        def __repr__(self) -> str:
            return "<Opaque>"

    loop: dict = {"name": "loop"}
    loop["self"] = loop
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input({"thing": Opaque(), "loop": loop})
        (step,) = [sp for sp in cap.spans() if sp.name == "s"]
        text = step.attributes[sc.ATTR_STEP_INPUT]
        assert '"<Opaque>"' in text and "<cycle>" in text
        assert dropped(cap, "content_unserialisable") == 1


def test_object_whose_repr_raises_is_survived():
    """Even an object whose __repr__ raises is captured without raising."""

    class Hostile:
        __slots__ = ()

        def __repr__(self) -> str:
            raise RuntimeError("no")

    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_output(Hostile())
        (step,) = [sp for sp in cap.spans() if sp.name == "s"]
        assert "unrepresentable" in step.attributes[sc.ATTR_STEP_OUTPUT]


def test_step_used_after_its_execution_ended_is_ignored_and_counted():
    """A step entered after its execution ended records nothing and is counted as use_after_end."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("inside") as inside:
            pass
        with run.step("late") as late:
            late.evaluate("x", score=0.5)
        inside.evaluate("x", score=0.5)
        assert cap.value("agent_steps_total", agent="a", step="late", status="passed") == 0
        assert dropped(cap, "use_after_end") == 3
        assert [s.name for s in cap.spans()] == ["inside", "invoke_workflow a"]


def test_execution_ended_twice_counts_once():
    """Ending an execution a second time changes nothing."""
    with testing.capture() as cap:
        run = exporter.start_execution("a")
        run.end()
        run.end()
        run.fail("timeout")
        assert cap.value("agent_executions_finished_total", agent="a", trigger="manual", status="completed") == 1
        assert dropped(cap, "use_after_end") == 1


@pytest.mark.parametrize(
    "carrier",
    [None, {}, {"v": 1}, "junk", {"v": 1, "agent": "a", "traceparent": "00-zz-zz-01"}, [1, 2]],
)
def test_forged_or_corrupted_carrier_starts_a_new_execution(carrier):
    """A bad carrier is counted and a new execution (new trace) still records the work."""
    with testing.capture() as cap:
        with exporter.resume_execution(carrier) as run, run.step("s"):
            pass
        assert dropped(cap, "invalid_carrier") == 1
        assert cap.total("agent_steps_total") == 1


def test_negative_and_non_numeric_token_counts():
    """Negative or non-numeric token counts are not counted, and are counted as invalid_usage."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_usage(input_tokens=-5, output_tokens="many")
            s.record_usage(input_tokens=7)
        assert cap.value("agent_tokens_total", agent="a", step="s", type="input") == 7
        assert dropped(cap, "invalid_usage") == 2


def test_redaction_hook_that_raises_withholds_content():
    """If the user's redaction hook raises, the content is withheld, never leaked."""

    def broken(text: str) -> str:
        raise ValueError("oops")

    with testing.capture(redact=broken) as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input({"email": "jane@example.com"})
        (step,) = [sp for sp in cap.spans() if sp.name == "s"]
        assert "jane" not in step.attributes[sc.ATTR_STEP_INPUT]
        assert dropped(cap, "redact_error") == 1


def test_internal_errors_do_not_reach_the_agent(monkeypatch):
    """A failure inside the library is caught, counted as internal_error, and the agent carries on."""
    with testing.capture() as cap:
        monkeypatch.setattr(cap.state.tracing.tracer, "start_span", _raise)
        with exporter.execution("a") as run, run.step("s") as s:
            s.evaluate("x", score=0.5)
        assert dropped(cap, "internal_error") >= 1


def _raise(*_a, **_k):
    raise RuntimeError("exporter bug")


def test_warnings_are_rate_limited(caplog):
    """A flood of the same bad input logs one warning, not one per call."""
    caplog.set_level(logging.WARNING, logger="agent_exporter")
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            for _ in range(500):
                s.evaluate("x", score=math.nan)
        assert dropped(cap, "invalid_score") == 500
        assert sum("score" in r.getMessage() for r in caplog.records) == 1


def test_endless_new_step_names_do_not_grow_memory():
    """Past the cap, new step names cost no memory: 50,000 more overflowing names stay under 1 MB."""
    import tracemalloc

    with testing.capture(log_level="off", tracing=False) as cap:  # spans in memory would grow
        with exporter.execution("a") as run:
            for i in range(5_000):
                with run.step(f"warm-{i}"):
                    pass
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(50_000):
                with run.step(f"task-{i}"):
                    pass
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
        assert grown < 1_000_000, f"{grown} bytes for 50,000 overflowing step names"
        assert cap.value("agent_steps_total", agent="a", step="__other__", status="passed") == 54_900
