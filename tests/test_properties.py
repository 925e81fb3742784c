"""Property-based tests over the public API (issue 7, point 1).

Hypothesis throws hostile names, scores, contents and call orders at the library. Properties:
nothing raises into the caller except the caller's own exceptions; the exposition stays
parseable by prometheus_client's text and OpenMetrics parsers (and, on a sample, by
`promtool check metrics`); every corrected or dropped input is counted in
`agent_exporter_dropped_total`; gauges come back to zero and started = finished when every
execution has ended.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import exporter
from exporter import testing
from exporter.pipeline.metrics import MAX_LABEL_LENGTH
from tests.servers import require_binary

PROPS = settings(
    max_examples=60,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ------------------------------------------------------------------------------ strategies

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
NASTY_CHARS = st.sampled_from(['"', "\\", "\n", "\r", "\t", "{", "}", "=", ",", "\x00", "#", " ", "é", "🤖", "\u202e"])
TEXT = st.lists(st.one_of(st.characters(), NASTY_CHARS, SURROGATE), max_size=40).map("".join)
NAMES = st.one_of(
    TEXT,
    st.sampled_from(["", "   ", "a" * 5000, 'q"uo\\te\n{x}', "\ud800", "__other__", "le", "agent", "日本語"]),
    st.integers(),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),  # unhashable
)
SCORES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 200),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.1, 1.5, 95, 100, 101, 10**400, True, "0.5", "abc", None]),
    st.floats(0, 1),
)
TOKENS = st.one_of(st.integers(-5, 10**6), st.sampled_from([None, -1, 1.5, math.nan, math.inf, "12", 10**400, True]))


class Unserialisable:
    """No __dict__, a repr() that raises: the worst plain object."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _self_referencing() -> Any:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    lst: list[Any] = [1]
    lst.append(lst)
    d["list"] = lst
    return d


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
CONTENT = st.one_of(
    st.recursive(
        JSON_LEAVES,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
        max_leaves=20,
    ),
    st.builds(_self_referencing),
    st.builds(Unserialisable),
    st.builds(object),
    st.sampled_from([b"\x00bytes", {1, 2}, (1, (2, (3,))), 10**5000, "x" * 20000, {(1, 2): "tuple key"}]),
)

# ------------------------------------------------------------------------------ helpers


def dropped(cap: testing.Capture, reason: str | None = None) -> float:
    labels = {"reason": reason} if reason else {}
    return cap.total("agent_exporter_dropped_total", **labels)


def check_exposition(cap: testing.Capture) -> str:
    """Both exposition formats parse completely; returns the text format."""
    text = generate_latest(cap.registry).decode("utf-8")
    families = list(parse_text(text))
    assert any(f.name == "agent_exporter_dropped" for f in families)
    om = generate_openmetrics(cap.registry).decode("utf-8")
    list(parse_openmetrics(om))
    return text


def name_is_bad(value: Any) -> bool:
    """What the library must correct (and count): not a str, blank, too long, not UTF-8."""
    if not isinstance(value, str):
        return True
    stripped = value.strip()
    if not stripped or len(stripped) > MAX_LABEL_LENGTH:
        return True
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def score_is_bad(score: Any) -> bool:
    """A score the library must drop or correct: not a number in [0, 1]."""
    if score is None or isinstance(score, bool):
        return True
    try:
        value = float(score)
    except (TypeError, ValueError, OverflowError):
        return True
    return not (math.isfinite(value) and 0 <= value <= 1)


# ------------------------------------------------------------------------------ properties


@PROPS
@given(agent=NAMES, trigger=NAMES, step=NAMES, tool=NAMES, evaluation=NAMES, path=NAMES, score=SCORES, tokens=TOKENS)
def test_hostile_names_and_scores_are_counted_and_exposition_parses(
    agent: Any, trigger: Any, step: Any, tool: Any, evaluation: Any, path: Any, score: Any, tokens: Any
) -> None:
    """Any names and scores: no exception, corrections counted, exposition parses."""
    with testing.capture(max_label_values=5) as cap:
        with exporter.execution(agent, trigger=trigger, task_id=agent, description=step) as run:
            with run.step(step, tool=tool) as s:
                with s.tool_call(tool):
                    pass
                s.evaluate(evaluation, score=score, explanation=path)
                s.record_usage(input_tokens=tokens, output_tokens=1)
                s.branch(path, not_selected=[agent, step], condition=trigger, reason=evaluation)
        check_exposition(cap)
        if any(name_is_bad(n) for n in (agent, step, tool, path, evaluation)) or name_is_bad(trigger):
            assert dropped(cap, "invalid_name") >= 1
        if score_is_bad(score):
            assert dropped(cap, "invalid_score") + dropped(cap, "score_corrected") >= 1
        if tokens is not None and not (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0):
            if not (isinstance(tokens, float) and math.isfinite(tokens) and tokens >= 0):
                assert dropped(cap, "invalid_usage") >= 1
        assert dropped(cap, "internal_error") == 0
        clean = not any(name_is_bad(n) for n in (agent, trigger, step, tool, path, evaluation))
        if (
            clean
            and not score_is_bad(score)
            and isinstance(tokens, int)
            and not isinstance(tokens, bool)
            and tokens >= 0
        ):
            # overflow past 5 distinct values per label cannot happen with one of each
            assert dropped(cap) == 0, "clean input must not be counted as dropped"
        assert (
            cap.value("agent_executions_finished_total", agent=run.agent, trigger=run.trigger, status="completed") == 1
        )
        assert cap.value("agent_executions_in_progress", agent=run.agent) == 0


@PROPS
@given(inp=CONTENT, out=CONTENT, max_bytes=st.sampled_from([64, 200, 4096]))
def test_any_content_is_captured_safely(inp: Any, out: Any, max_bytes: int) -> None:
    """Nested, huge, self-referencing, unserialisable inputs: a bounded string on the span."""
    with testing.capture(max_content_bytes=max_bytes) as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input(inp)
            s.record_output(out)
        check_exposition(cap)
        assert dropped(cap, "internal_error") == 0
        (step_span,) = [sp for sp in cap.spans() if sp.name == "s"]
        for key in ("task.step.input", "task.step.output"):
            value = step_span.attributes[key]
            assert isinstance(value, str)
            assert len(value.encode("utf-8")) <= max_bytes
        for obj in (inp, out):
            if isinstance(obj, Unserialisable | object) and type(obj) in (Unserialisable, object):
                assert dropped(cap, "content_unserialisable") >= 1
            if isinstance(obj, str) and len(obj.encode("utf-8", "replace")) > max_bytes:
                assert dropped(cap, "content_truncated") >= 1


class AgentError(Exception):
    """The caller's own exception: it must come out unchanged."""


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


OPS = st.sampled_from(
    [
        "step",
        "step_raises",
        "tool_raises",
        "end",
        "end_twice",
        "fail",
        "fail_bad_cause",
        "cancel",
        "wait",
        "start",
        "suspend",
        "suspend_bad_reason",
        "step_after_end",
        "evaluate_after_end",
        "raise_bad_str",
        "enter_twice",
    ]
)
BAD_CARRIERS = st.one_of(
    st.none(),
    st.integers(),
    TEXT,
    st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.floats()), max_size=4),
    st.just({"v": 1, "agent": "a", "traceparent": "00-zz-zz-01"}),
)


@PROPS
@given(
    ops=st.lists(OPS, min_size=1, max_size=12),
    pending=st.sampled_from([None, "queued", "approval", "bogus"]),
    corrupt=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "traceparent",
                    "v",
                    "active",
                    "steps",
                    "reason",
                    "tokens_in",
                    "agent",
                    "suspended_at",
                    "started",
                    "score_n",
                ]
            ),
            st.one_of(st.none(), TEXT, st.integers(), st.floats(), st.booleans()),
        ),
        max_size=3,
    ),
    bad_carrier=BAD_CARRIERS,
)
def test_any_call_order_keeps_the_books_balanced(
    ops: list[str], pending: str | None, corrupt: list[Any], bad_carrier: Any
) -> None:
    """Odd call orders, double ends, suspend/resume with forged carriers: no raise, sums hold."""
    with testing.capture() as cap:
        carriers: list[dict[str, Any]] = []
        for op in ops:
            before = dropped(cap)
            try:
                with exporter.execution("agent", trigger="api", pending=pending) as run:
                    if op == "step":
                        with run.step("s") as s:
                            s.evaluate("q", score=0.9)
                    elif op == "step_raises":
                        with pytest.raises(AgentError), run.step("s"):
                            raise AgentError("boom")
                    elif op == "tool_raises":
                        with run.step("s") as s, pytest.raises(TimeoutError), s.tool_call("api"):
                            raise TimeoutError("slow")
                    elif op == "end":
                        run.end()
                    elif op == "end_twice":
                        run.end()
                        run.end()
                    elif op == "fail":
                        run.fail("tool_error", "tool broke")
                    elif op == "fail_bad_cause":
                        run.fail(["not", "a", "cause"], "x")
                    elif op == "cancel":
                        run.cancel()
                    elif op == "wait":
                        run.wait("approval")
                    elif op == "start":
                        run.start()
                    elif op in ("suspend", "suspend_bad_reason"):
                        with run.step("before"):
                            pass
                        c = run.suspend("approval" if op == "suspend" else {"bad": "reason"})
                        assert isinstance(c, dict) and c
                        carriers.append(c)
                    elif op == "step_after_end":
                        run.end()
                        with run.step("late") as late:
                            late.evaluate("x", score=0.5)
                        assert dropped(cap, "use_after_end") >= 1
                    elif op == "evaluate_after_end":
                        with run.step("s") as s:
                            pass
                        s.evaluate("x", score=0.5)
                        s.record_input({"a": 1})
                        assert dropped(cap, "use_after_end") >= 1
                    elif op == "raise_bad_str":
                        raise BadStr()
                    elif op == "enter_twice":
                        with run:
                            pass
                        assert dropped(cap) > before
            except BadStr:
                assert op == "raise_bad_str"
            if op == "fail_bad_cause":
                assert dropped(cap, "unknown_cause") >= 1

        # Resume the good carriers in another "process"; corrupt one copy; forge one.
        # A corrupted copy is resumed with every field that still validates: when its `started`
        # survived (True), it is a replay that ends the same execution a second time; otherwise
        # it counts a start of its own.
        replays = 0
        for i, c in enumerate(carriers):
            if i == 0 and corrupt:
                forged = dict(c)
                for key, value in corrupt:
                    forged[key] = value
                invalid_before = dropped(cap, "invalid_carrier")
                with exporter.resume_execution(forged) as run, run.step("after forged"):
                    pass
                replays += forged.get("started") is True
                assert dropped(cap, "invalid_carrier") - invalid_before in (0, 1)
            with exporter.resume_execution(c) as run, run.step("after"):
                pass
        before = dropped(cap, "invalid_carrier")
        with exporter.resume_execution(bad_carrier) as run, run.step("after bad"):
            pass
        assert dropped(cap, "invalid_carrier") == before + 1

        check_exposition(cap)
        assert dropped(cap, "internal_error") == 0
        assert cap.total("agent_executions_in_progress") == 0
        assert cap.total("agent_executions_pending") == 0
        started = cap.total("agent_executions_started_total")
        finished = cap.total("agent_executions_finished_total")
        assert started + replays == finished, f"started {started} + replays {replays} != finished {finished}"


@PROPS
@given(names=st.lists(NAMES, min_size=1, max_size=5), score=SCORES)
async def test_async_api_under_hostile_input(names: list[Any], score: Any) -> None:
    """`async with` executions and steps, concurrently, with hostile input: no raise, balanced."""
    with testing.capture() as cap:

        async def one(name: Any) -> None:
            async with exporter.execution(name) as run, run.step(name) as s:
                await asyncio.sleep(0)
                s.evaluate(name, score=score)

        await asyncio.gather(*(one(n) for n in names))
        check_exposition(cap)
        assert dropped(cap, "internal_error") == 0
        assert cap.total("agent_executions_in_progress") == 0
        assert cap.total("agent_executions_finished_total") == len(names)


@pytest.mark.servers
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(NAMES, min_size=3, max_size=6), score=SCORES)
def test_promtool_accepts_sampled_expositions(names: list[Any], score: Any) -> None:
    """`promtool check metrics` parses a hostile exposition and has no lint complaint."""
    promtool = require_binary("promtool")
    with testing.capture() as cap:
        for name in names:
            with exporter.execution(name, trigger=name) as run, run.step(name, tool=name) as s:
                s.evaluate(name, score=score)
                s.branch(name)
        text = check_exposition(cap)
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b"", proc.stdout + proc.stderr
