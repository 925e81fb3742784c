"""The no-op objects: the same public methods as the real ones, and typos fail the same way."""

from __future__ import annotations

import pytest

import exporter
from exporter import testing
from exporter.instrument import noop
from exporter.instrument.execution import Execution
from exporter.instrument.steps import LlmCall, Step, ToolCall


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_noop_classes_have_exactly_the_real_public_names():
    """NoopExecution, NoopStep and NoopToolCall mirror Execution, Step and ToolCall, attributes included."""
    with testing.capture():
        with exporter.execution("a") as run, run.step("s", tool="t") as step, step.tool_call("t") as call:
            assert isinstance(run, Execution) and isinstance(step, Step) and isinstance(call, ToolCall)
            pairs = [(run, noop.NOOP_EXECUTION), (step, noop.NOOP_STEP), (call, noop.NOOP_TOOL_CALL)]
            for real, fake in pairs:
                assert _public(real) == _public(fake), type(real).__name__


def test_a_misspelled_method_fails_unconfigured_as_it_does_configured():
    """`run.sttep` raises AttributeError with or without configure()."""
    with exporter.execution("a") as run:
        assert run is noop.NOOP_EXECUTION
        with pytest.raises(AttributeError):
            run.sttep("x")  # type: ignore[union-attr]
        with run.step("s") as s, pytest.raises(AttributeError):
            s.evalute("q", score=1)  # type: ignore[union-attr]
    with testing.capture(), exporter.execution("a") as run:
        with pytest.raises(AttributeError):
            run.sttep("x")  # type: ignore[union-attr]


def test_unconfigured_calls_do_nothing_and_return_their_types():
    """Unconfigured, every method runs, returns what the real one would return, and raises nothing."""
    run = exporter.start_execution("a", trigger="email")
    with run.step("s") as s, s.tool_call("t"):
        assert s.evaluate("q", score=0.5) is None
        s.record_usage(1, 2)
        s.branch("left", ["right"])
    assert run.suspend() == {}
    run.end()
    assert exporter.current_execution() is noop.NOOP_EXECUTION
    assert exporter.current_step() is noop.NOOP_STEP


def test_removed_names_stay_removed():
    """The undocumented `Execution.resume` alias and the dead names a dead-code pass found are gone."""
    from exporter import content
    from exporter import semconv as sc
    from exporter.pipeline import metrics

    assert not hasattr(exporter.Execution, "resume") and not hasattr(noop.NoopExecution, "resume")
    assert not any(hasattr(sc, n) for n in ("TERMINAL_STATUSES", "METRIC_NAMES", "LOG_KEYS"))
    assert not hasattr(content.CaptureReport(), "masked")
    assert not hasattr(metrics.Metrics, "family")


def test_noop_llm_call_has_exactly_the_real_public_names():
    """NoopLlmCall mirrors LlmCall, and an unconfigured model call records nothing and raises nothing."""
    with testing.capture():
        with exporter.execution("a") as run, run.step("s") as step, step.llm_call("gpt-4o") as call:
            assert isinstance(call, LlmCall)
            assert _public(call) == _public(noop.NOOP_LLM_CALL)
    exporter.reset()
    with exporter.execution("a") as run, run.step("s") as step, step.llm_call("gpt-4o") as call:
        assert call is noop.NOOP_LLM_CALL
        call.record_usage(10, 2, cache_read_tokens=1, model="gpt-4o")
        step.record_usage(1, 2, cache_write_tokens=1, reasoning_tokens=1, model="m", provider="p")
