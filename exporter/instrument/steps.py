"""Steps and tool calls inside an execution: child spans, step and tool metrics, evaluations."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from logging import DEBUG
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _config
from .. import semconv as sc
from ..content import clean_text
from ..errors import llm_outcome_of, tool_outcome_of
from ..pipeline.events import (
    BranchTaken,
    EvaluationRecorded,
    LlmCallFinished,
    StepFinished,
    StepStarted,
    TokensUsed,
    ToolCallFinished,
)
from ..semconv import DropReason, SamplingReason
from .lifecycle import PENDING, RUNNING
from .noop import NOOP_LLM_CALL, NOOP_TOOL_CALL, NoopLlmCall, NoopToolCall
from .recording import (
    FAILED,
    NEEDS_REVIEW,
    PASSED,
    STATUS_RANK,
    captured,
    current_step_var,
    exc_text,
    hex_ids,
    internal_error,
    record_exception,
    restore_context,
)  # fmt: skip

if TYPE_CHECKING:
    from .execution import Execution


_GONE = object()  # `_claim`'s marker: the step was no longer open

class Step:
    """One workflow node inside an execution; a child span and the step metrics."""

    __slots__ = (
        "run", "name", "tool", "index", "status", "_state", "_rec", "_span", "_ctx", "_tokens", "_t0",
        "_dead", "_tin", "_tout", "_attrs", "_tcr", "_tcw", "__weakref__",
    )  # fmt: skip

    def __init__(self, run: Execution, name: Any, tool: Any = None) -> None:
        self.run = run
        # What a step records through: its execution's runtime and recorder, taken once here.
        self._state = run._state
        self._rec = rec = run._rec
        self.name = rec.name(name, "step")
        self.tool: str | None = rec.name(tool, "tool") if tool is not None else None
        self.index = 0
        self.status = PASSED
        self._span: Any = None
        self._ctx: Any = None
        self._tokens: list[Any] = []
        self._t0 = 0.0
        self._dead = False
        self._tin = 0
        self._tout = 0
        self._tcr = 0  # cache read and cache write parts of `_tin`
        self._tcw = 0
        self._attrs: dict[str, Any] = {}

    def _alive(self, what: str) -> bool:
        if self._dead or self._span is None:
            self._state.drop(DropReason.USE_AFTER_END, f"{what} on a step that is not running; ignored")
            return False
        return True

    def __enter__(self) -> Step:
        run = self.run
        try:
            if run._phase == PENDING:
                run.start()  # decided under the execution's lock
            if run._phase != RUNNING or run._generation != self._state.generation:  # over, or the parent's (a fork)
                self._dead = True
                self._state.drop(
                    DropReason.USE_AFTER_END, f"step {self.name!r} used after its execution ended; not recorded"
                )
                return self
            self.index = next(run._steps)
            attrs: dict[str, Any] = {sc.ATTR_STEP_NAME: self.name, sc.ATTR_STEP_INDEX: self.index}
            if self.tool is not None:
                attrs[sc.ATTR_GEN_AI_TOOL_NAME] = self.tool
            self._span = self._state.tracing.tracer.start_span(self.name, context=run._ctx, attributes=attrs)
            self._ctx = trace.set_span_in_context(self._span, run._ctx)
            if self._rec.tasks is not None:  # only a task store shows the step running now
                self._rec.record(StepStarted(run.ref, self.name))
            self._tokens = [otel_context.attach(self._ctx), current_step_var.set(self)]
            self._t0 = time.perf_counter()
            run._open[self] = None  # one dict operation: atomic, no lock on every step
            # The execution may have ended since the check above (a watchdog timeout). Its end
            # names why before it looks for open steps: if not named yet, it will find this one.
            why = run._abort_why
            if why is not None:
                self._abort(why)  # it may have looked already: ended here, or there (`_claim`)
        except Exception as exc:  # noqa: BLE001
            self._dead = True
            run._open.pop(self, None)
            internal_error(self._state, "step enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._span is None:
            return False
        try:
            if self._claim():
                self._end(exc)
            elif self._tokens:  # ended by its execution (timeout): this exit is not recorded
                self._state.drop(
                    DropReason.USE_AFTER_END,
                    f"step {self.name!r} ended after its execution had ended; it was recorded as failed then",
                )
        except Exception as err:  # noqa: BLE001
            internal_error(self._state, "step exit", err)
        finally:
            tokens, self._tokens = self._tokens, []
            if tokens:
                restore_context(current_step_var, tokens[1], tokens[0])
        return False

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def _claim(self) -> bool:
        """True for the one caller that ends this step (its exit, or its execution's end): taking
        the step out of its execution's open steps is a single atomic `dict.pop`, so one wins."""
        if self.run._open.pop(self, _GONE) is _GONE:
            return False
        self._dead = True
        return True

    def _abort(self, why: str) -> None:
        """End the step as failed because its execution ended first."""
        if not self._claim():
            return
        self.status = FAILED
        self._attrs[sc.ATTR_ERROR_TYPE] = why
        self._end(None, f"execution ended ({why}) while the step was running")

    def _end(self, exc: BaseException | None, failure: str = "step failed its evaluation") -> None:
        run = self.run
        dur = time.perf_counter() - self._t0
        span = self._span
        if exc is not None:
            self.status = FAILED
            record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, exc_text(exc)))
            self._attrs[sc.ATTR_ERROR_TYPE] = type(exc).__qualname__
        elif self.status == FAILED:
            span.set_status(Status(StatusCode.ERROR, failure))
        attrs = self._attrs
        attrs[sc.ATTR_STEP_STATUS] = self.status
        # Tokens, not cost: a step's spend is on its `chat {model}` spans and summed on the
        # execution's; one more attribute on every step span costs more than pricing it (issue 24).
        if self._tin or self._tout:
            attrs[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] = self._tin
            attrs[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = self._tout
            if self._tcr:
                attrs[sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS] = self._tcr
            if self._tcw:
                attrs[sc.ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS] = self._tcw
        span.set_attributes(attrs)
        span.end()
        if self.status != PASSED and run._sampling is not None:  # the trace will be kept: link it now
            run._flag(SamplingReason.STEP_FAILED if self.status == FAILED else SamplingReason.NEEDS_REVIEW)
        rec = self._rec
        span_id = hex_ids(span)[1] if rec.logs(DEBUG) else None  # only the debug log event shows it
        rec.record(StepFinished(run.ref, self.name, self.status, dur, self.index, span_id))

    def _mark(self, status: str) -> None:
        if STATUS_RANK[status] > STATUS_RANK[self.status]:
            self.status = status

    # ------------------------------------------------------------------ inside a step

    def tool_call(self, tool: Any, call_id: str | None = None) -> ToolCall | NoopToolCall:
        """A context manager for one call to a tool or integration (outcome from the exception)."""
        try:
            if not self._alive("tool_call()"):
                return NOOP_TOOL_CALL
            return ToolCall(self, tool, call_id)
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "tool_call()", exc)
            return NOOP_TOOL_CALL

    def evaluate(
        self,
        name: Any,
        score: Any = None,
        passed: bool | None = None,
        explanation: Any = None,
        *,
        threshold: float | None = None,
    ) -> str | None:
        """Record one evaluation; returns its result ('pass' / 'fail') or None if it has none.

        `score` is 0-1; a percentage (1 < score <= 100) is divided by 100 and counted as
        corrected; NaN, inf, negatives and > 100 are not observed and counted as invalid. With
        no `passed`, the result is score >= threshold (default: the agent's
        `min_evaluation_score`).
        """
        try:
            if not self._alive("evaluate()"):
                return None
            run = self.run
            st = self._state
            value = clean_score(st, score) if score is not None else None
            if passed is not None and not isinstance(passed, bool):
                passed = bool(passed)
            if passed is None and value is not None:
                limit = threshold if threshold is not None else run.objectives.min_evaluation_score
                passed = value >= limit
            ev_name = self._rec.name(name, "evaluation name")
            event: dict[str, Any] = {sc.ATTR_EVALUATION_NAME: ev_name}
            result = None
            if passed is not None:
                result = sc.EvaluationResult.PASS.value if passed else sc.EvaluationResult.FAIL.value
                event[sc.ATTR_EVALUATION_SCORE_LABEL] = result
            elif score is None:
                st.drop(DropReason.INVALID_SCORE, f"evaluation {ev_name!r} has neither a score nor passed")
            if value is not None:
                event[sc.ATTR_EVALUATION_SCORE_VALUE] = value
                run._add_score(value)
            if explanation is not None:
                event[sc.ATTR_EVALUATION_EXPLANATION] = clean_text(explanation, 1024)
            self._span.add_event(sc.EVENT_EVALUATION, event)
            if result is not None or value is not None:
                self._rec.record(EvaluationRecorded(run.ref, self.name, ev_name, result, value))
            if passed is False:
                if run._sampling is not None:
                    run._flag(SamplingReason.EVALUATION_FAILED)
                self._mark(st.settings.evaluation_fail_status)
            elif (
                value is not None and st.settings.review_threshold is not None and value < st.settings.review_threshold
            ):
                self._mark(NEEDS_REVIEW)
            return result
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "evaluate()", exc)
            return None

    def record_usage(
        self,
        input_tokens: Any = 0,
        output_tokens: Any = 0,
        *,
        cache_read_tokens: Any = 0,
        cache_write_tokens: Any = 0,
        reasoning_tokens: Any = 0,
        model: Any = None,
        provider: Any = None,
    ) -> None:
        """Tokens this step spent, and what they cost (summed per step, per execution, in the metrics).

        `input_tokens` counts every input token, the cache read and cache write parts included;
        `reasoning_tokens` is part of `output_tokens` (the OpenTelemetry GenAI and OpenAI
        definitions). Anthropic reports input without the cache: pass
        `input_tokens=input + cache_read + cache_write`. Cache parts larger than the input (or
        reasoning larger than the output) are taken as that style, added, and counted as
        `invalid_usage`. With `model`, the usage is priced (genai-prices, `configure(prices=)`);
        without a price it is counted unpriced. For tiered prices, one call per model request.
        """
        try:
            if not self._alive("record_usage()"):
                return
            self._usage(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
                        model, provider)  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "record_usage()", exc)

    def _usage(
        self, input_tokens: Any, output_tokens: Any, cache_read: Any, cache_write: Any, reasoning: Any,
        model: Any, provider: Any,
    ) -> tuple[int, int, int, int, int, str | None, str | None, float | None]:  # fmt: skip
        """Clean, price and record one usage; what it recorded (for a model call's span)."""
        st = self._state
        tin = clean_count(st, input_tokens, "input_tokens")
        tout = clean_count(st, output_tokens, "output_tokens")
        tcr = clean_count(st, cache_read, "cache_read_tokens") if cache_read else 0
        tcw = clean_count(st, cache_write, "cache_write_tokens") if cache_write else 0
        trs = clean_count(st, reasoning, "reasoning_tokens") if reasoning else 0
        if tcr + tcw > tin:
            st.drop(
                DropReason.INVALID_USAGE,
                f"cache_read_tokens + cache_write_tokens ({tcr} + {tcw}) exceed input_tokens ({tin}): taken as "
                "input without the cache (Anthropic style) and added to it; pass input_tokens with the cache included",
            )
            tin += tcr + tcw
        if trs > tout:
            st.drop(
                DropReason.INVALID_USAGE,
                f"reasoning_tokens ({trs}) exceed output_tokens ({tout}): taken as output without reasoning and "
                "added to it; pass output_tokens with reasoning included",
            )
            tout += trs
        rec = self._rec
        model_name = rec.name(model, "model") if model is not None else None
        provider_name = rec.name(provider, "provider") if provider is not None else None
        cost: float | None = None
        unpriced = False
        prices = st.prices
        if prices is not None and (tin or tout):
            price = prices.price(provider_name, model_name)
            if price is None:
                unpriced = True
            else:
                cost = price.cost(tin, tout, tcr, tcw)
                if provider_name is None:
                    provider_name = price.provider
        run = self.run
        if tin or tout:
            rec.record(TokensUsed(run.ref, self.name, tin, tout, tcr, tcw, trs, provider_name, model_name, cost,
                                  unpriced))  # fmt: skip
        self._tin += tin
        self._tout += tout
        self._tcr += tcr
        self._tcw += tcw
        run._add_usage(tin, tout, tcr, tcw, cost, tin + tout if unpriced else 0)
        return tin, tout, tcr, tcw, trs, provider_name, model_name, cost

    def llm_call(self, model: Any, provider: Any = None) -> LlmCall | NoopLlmCall:
        """A context manager (sync and async) for one model call: a `chat {model}` child span, its
        latency and outcome (success, error, timeout, rate_limited) in the metrics; report its
        usage with `call.record_usage(...)`."""
        try:
            if not self._alive("llm_call()"):
                return NOOP_LLM_CALL
            return LlmCall(self, model, provider)
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "llm_call()", exc)
            return NOOP_LLM_CALL

    def record_input(self, obj: Any) -> None:
        """Capture the step's input on its span (masked, redacted, truncated; off if disabled)."""
        self._capture(sc.ATTR_STEP_INPUT, obj)

    def record_output(self, obj: Any) -> None:
        """Capture the step's output on its span (masked, redacted, truncated; off if disabled)."""
        self._capture(sc.ATTR_STEP_OUTPUT, obj)

    def _capture(self, key: str, obj: Any) -> None:
        try:
            if not self._alive(f"record of {key}"):
                return
            text = captured(self._state, key, obj)
            if text is not None:
                self._attrs[key] = text
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "content capture", exc)

    def branch(
        self, selected: Any, not_selected: Iterable[Any] = (), condition: Any = None, reason: Any = None
    ) -> None:
        """A decision point: the path taken, the paths not taken, the condition and why."""
        try:
            if not self._alive("branch()"):
                return
            run = self.run
            rec = self._rec
            path = rec.name(selected, "path")
            others = [clean_text(p, 256) for p in (not_selected or ())]
            event: dict[str, Any] = {sc.ATTR_BRANCH_SELECTED: path, sc.ATTR_BRANCH_NOT_SELECTED: others}
            if condition is not None:
                event[sc.ATTR_BRANCH_CONDITION] = clean_text(condition, 1024)
            if reason is not None:
                event[sc.ATTR_BRANCH_REASON] = clean_text(reason, 1024)
            self._span.add_event(sc.EVENT_BRANCH_DECISION, event)
            span_id = hex_ids(self._span)[1] if rec.logs(DEBUG) else None
            rec.record(BranchTaken(run.ref, self.name, path, others, span_id))
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "branch()", exc)

    def flag_for_review(self, reason: Any = None) -> None:
        """Mark the step `needs_review` (completed, but a human should look)."""
        try:
            if not self._alive("flag_for_review()"):
                return
            self._mark(NEEDS_REVIEW)
            self._span.add_event(
                sc.EVENT_REVIEW_FLAG, {sc.ATTR_REVIEW_REASON: clean_text(reason, 1024)} if reason is not None else {}
            )
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "flag_for_review()", exc)

    def set_status(self, status: Any) -> None:
        """Set the step's status explicitly ('passed', 'failed', 'needs_review')."""
        try:
            if not self._alive("set_status()"):
                return
            if not isinstance(status, str) or status not in STATUS_RANK:  # unhashable must not raise
                self._state.drop(
                    DropReason.UNKNOWN_STATUS, f"step status {status!r} is not one of {sorted(STATUS_RANK)}; ignored"
                )
                return
            self.status = str(status)
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "set_status()", exc)


class ToolCall:
    """One call to a tool or integration: a grandchild span, a count and a response time."""

    __slots__ = ("step", "tool", "call_id", "_state", "_rec", "_span", "_t0", "_token")
    _ids = itertools.count(1)

    def __init__(self, step: Step, tool: Any, call_id: str | None) -> None:
        self.step = step
        self._state = step.run._state
        self._rec = step.run._rec
        self.tool = self._rec.name(tool, "tool")
        self.call_id = call_id
        self._span: Any = None
        self._t0 = 0.0
        self._token: Any = None

    def __enter__(self) -> ToolCall:
        try:
            step = self.step
            tracer = self._state.tracing.tracer
            cid = self.call_id if self.call_id is not None else f"call_{next(ToolCall._ids)}"
            self._span = tracer.start_span(
                sc.SPAN_TOOL_CALL.format(tool=self.tool),
                context=step._ctx,
                kind=SpanKind.INTERNAL,
                attributes={
                    sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
                    sc.ATTR_GEN_AI_TOOL_NAME: self.tool,
                    sc.ATTR_GEN_AI_TOOL_CALL_ID: str(cid),
                },
            )
            self._token = otel_context.attach(trace.set_span_in_context(self._span, step._ctx))
            self._t0 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "tool_call enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._span is None:
            return False
        try:
            dur = time.perf_counter() - self._t0
            run = self.step.run
            outcome = tool_outcome_of(exc).value
            if exc is not None:
                record_exception(self._span, exc)
                self._span.set_attribute(sc.ATTR_ERROR_TYPE, type(exc).__qualname__)
                self._span.set_status(Status(StatusCode.ERROR, exc_text(exc)))
            self._span.end()
            if run.ended:  # the execution ended first (a timeout): the call is not counted
                self._state.drop(
                    DropReason.USE_AFTER_END, f"tool call {self.tool!r} ended after its execution had ended"
                )
                return False
            self._rec.record(ToolCallFinished(run.ref, self.tool, outcome, dur))
        except Exception as err:  # noqa: BLE001
            internal_error(self._state, "tool_call exit", err)
        finally:
            self._span = None
            token, self._token = self._token, None
            restore_context(None, None, token)
        return False

    async def __aenter__(self) -> ToolCall:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


class LlmCall:
    """One call to a model: a `chat {model}` grandchild span (GenAI attributes), a count by outcome
    and a latency; `record_usage()` prices its tokens like the step's."""

    __slots__ = ("step", "model", "provider", "_state", "_rec", "_span", "_t0", "_token", "_attrs", "_ended")

    def __init__(self, step: Step, model: Any, provider: Any) -> None:
        self.step = step
        self._state = step._state
        self._rec = rec = step._rec
        self.model: str = rec.name(model, "model")
        self.provider: str | None = rec.name(provider, "provider") if provider is not None else None
        prices = self._state.prices
        if self.provider is None and prices is not None:  # the price list's provider for the model, if any
            price = prices.price(None, self.model)
            self.provider = price.provider if price is not None else None
        self._span: Any = None
        self._t0 = 0.0
        self._token: Any = None
        self._attrs: dict[str, Any] = {}
        self._ended = False

    def __enter__(self) -> LlmCall:
        try:
            step = self.step
            attrs: dict[str, Any] = {
                sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_CHAT,
                sc.ATTR_GEN_AI_REQUEST_MODEL: self.model,
            }
            if self.provider is not None:
                attrs[sc.ATTR_GEN_AI_PROVIDER_NAME] = self.provider
            self._span = self._state.tracing.tracer.start_span(
                sc.SPAN_LLM_CALL.format(model=self.model), context=step._ctx, kind=SpanKind.CLIENT, attributes=attrs
            )
            self._token = otel_context.attach(trace.set_span_in_context(self._span, step._ctx))
            self._t0 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "llm_call enter", exc)
        return self

    def record_usage(
        self,
        input_tokens: Any = 0,
        output_tokens: Any = 0,
        *,
        cache_read_tokens: Any = 0,
        cache_write_tokens: Any = 0,
        reasoning_tokens: Any = 0,
        model: Any = None,
        provider: Any = None,
    ) -> None:
        """This call's usage, as `Step.record_usage` (model and provider default to the call's;
        `model` here is the model that answered, `gen_ai.response.model`)."""
        try:
            if self._span is None or self._ended or not self.step._alive("llm_call record_usage()"):
                return
            tin, tout, tcr, tcw, trs, prov, mod, cost = self.step._usage(
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
                model if model is not None else self.model, provider if provider is not None else self.provider,
            )  # fmt: skip
            a = self._attrs
            a[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] = a.get(sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS, 0) + tin
            a[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = a.get(sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, 0) + tout
            for key, n in ((sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS, tcr), (sc.ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS,
                           tcw), (sc.ATTR_GEN_AI_USAGE_REASONING_TOKENS, trs)):  # fmt: skip
                if n:
                    a[key] = a.get(key, 0) + n
            if mod is not None and mod != self.model:
                a[sc.ATTR_GEN_AI_RESPONSE_MODEL] = mod
            if prov is not None:
                if self.provider is None:
                    self.provider = prov  # the price list's provider, when the call named none
                a[sc.ATTR_GEN_AI_PROVIDER_NAME] = prov
            if cost is not None:
                a[sc.ATTR_TASK_COST_USD] = a.get(sc.ATTR_TASK_COST_USD, 0.0) + cost
            elif tin or tout:
                if self._state.prices is not None:
                    a[sc.ATTR_TASK_UNPRICED_TOKENS] = a.get(sc.ATTR_TASK_UNPRICED_TOKENS, 0) + tin + tout
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "llm_call record_usage()", exc)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        span = self._span
        if span is None or self._ended:
            return False
        self._ended = True
        try:
            dur = time.perf_counter() - self._t0
            run = self.step.run
            outcome = llm_outcome_of(exc).value
            attrs = self._attrs
            if exc is not None:
                record_exception(span, exc)
                attrs[sc.ATTR_ERROR_TYPE] = type(exc).__qualname__
                span.set_status(Status(StatusCode.ERROR, exc_text(exc)))
            if attrs:
                span.set_attributes(attrs)
            span.end()
            if run.ended:  # the execution ended first (a timeout): the call is not counted
                self._state.drop(DropReason.USE_AFTER_END, f"model call {self.model!r} ended after its execution")
                return False
            self._rec.record(LlmCallFinished(run.ref, self.provider, self.model, outcome, dur))
        except Exception as err:  # noqa: BLE001
            internal_error(self._state, "llm_call exit", err)
        finally:
            token, self._token = self._token, None
            restore_context(None, None, token)
        return False

    async def __aenter__(self) -> LlmCall:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


def clean_score(st: _config.State, score: Any) -> float | None:
    try:
        value = float(score)
    except (TypeError, ValueError, OverflowError):
        st.drop(DropReason.INVALID_SCORE, f"evaluation score {score!r} is not a number; not observed")
        return None
    if isinstance(score, bool) or not math.isfinite(value) or value < 0 or value > 100:
        st.drop(DropReason.INVALID_SCORE, f"evaluation score {score!r} is outside 0-1 (or 0-100); not observed")
        return None
    if value > 1:
        st.drop(
            DropReason.SCORE_CORRECTED,
            f"evaluation score {score!r} looks like a percentage; recorded as {value / 100:g}",
        )
        return value / 100
    return value


def clean_count(st: _config.State, n: Any, what: str) -> int:
    if n is None or (isinstance(n, int | float) and n == 0):
        return 0
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**63:
        return n
    if isinstance(n, bool) or not isinstance(n, float) or not math.isfinite(n) or n < 0 or n >= 2**63:
        st.drop(DropReason.INVALID_USAGE, f"{what}={n!r} is not a count >= 0; not counted")
        return 0
    return int(n)
