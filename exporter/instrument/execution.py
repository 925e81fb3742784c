"""Executions: the context manager agent code writes against, and the module functions.

An execution starts its span on enter and, on exit, makes one round of records: span attributes
set in one call, metric children looked up in a cache, one log event. Telemetry never raises
into the agent: every entry point catches its own failures at one boundary and counts them in
`agent_exporter_dropped_total`; the agent's own exceptions are recorded and pass through.
Steps and tool calls live in `steps.py`, the suspend/resume carrier in `carrier.py`.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _config
from .. import semconv as sc
from ..content import clean_text
from ..errors import cause_of
from ..pipeline.events import (
    ExecutionContent,
    ExecutionFinished,
    ExecutionRef,
    ExecutionResumed,
    ExecutionSuspended,
)
from ..pipeline.metrics import exemplar_of
from ..semconv import DropReason, FailureCause, PendingReason, SamplingReason
from ..traces.sampling import Sampling
from .carrier import make_carrier
from .lifecycle import ENDED, SUSPENDED, Lifecycle
from .noop import NOOP_STEP, NoopStep
from .recording import (
    CANCELLED,
    CAUSES,
    COMPLETED,
    EXEC_FAILED,
    KNOWN_TRIGGERS,
    captured,
    clean_reason,
    current_execution_var,
    exc_text,
    hex_ids,
    internal_error,
    propagator,
    record_exception,
    restore_context,
)  # fmt: skip
from .rerun_scope import rerun_scope_var
from .steps import Step

F = TypeVar("F", bound=Callable[..., Any])


class Execution(Lifecycle):
    """One task execution: a span, its steps, and its metrics at the end.

    Use as `with` / `async with`; a normal exit completes it, an exception fails it (cause from
    the exception) and passes through. `fail()` and `cancel()` set the outcome that the exit
    records; `suspend()` hands the execution to another process. Its phases and the moves
    between them are `Lifecycle`'s.
    """

    def __init__(
        self,
        state: _config.State,
        agent: Any,
        trigger: Any = "manual",
        task_id: Any = None,
        description: Any = None,
        *,
        pending: str | None = None,
        max_duration: float | None = None,
        version: Any = None,
        steps: int | None = None,
        _resume: Mapping[str, Any] | None = None,
    ) -> None:
        rec = state.recorder
        self._state = state
        self._rec = rec
        # Inside a re-run, the re-run's trigger, task id and version win over the code's (rerun_scope.py).
        self.rerun_of: str | None = None
        scope = rerun_scope_var.get() if _resume is None else None
        if scope is not None:
            trigger, task_id, self.rerun_of = sc.TRIGGER_RERUN, scope.next_task_id(), scope.case_id
            version = scope.version if scope.version is not None else version
        # Names (cleaned, masked, bounded) go on spans, logs and events; the recorder caps them
        # for metrics only.
        self.agent = rec.name(agent, "agent name")
        self.trigger = rec.name(trigger, "trigger")
        if self.trigger not in KNOWN_TRIGGERS and self.trigger != sc.UNKNOWN_LABEL_VALUE:
            state.warnings.warn(
                f"trigger:{self.trigger}",
                f"unknown trigger {self.trigger!r} (known: {', '.join(sorted(KNOWN_TRIGGERS))}); recorded as given",
            )
        self.task_id = str(task_id) if task_id is not None else uuid.uuid4().hex
        version = version if version is not None else state.settings.agent_version  # the process default
        self.version: str | None = None if version is None else rec.name(version, "agent version")
        self.description = description
        self._description: str | None = None  # cleaned (masked, bounded) on enter, for spans, store, carrier
        self.objectives = state.settings.objectives_for(self.agent)
        md = max_duration if max_duration is not None else state.settings.max_duration
        if md is not None and (not isinstance(md, int | float) or not md > 0):
            rec.drop(DropReason.INVALID_USAGE, f"max_duration {md!r} is not > 0; ignored")
            md = None
        self.max_duration = md
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
            rec.drop(DropReason.INVALID_USAGE, f"steps {steps!r} is not a whole number >= 1; ignored")
            steps = None
        self.steps_total: int | None = steps  # the steps this execution declared it will take
        self.status = sc.ExecutionStatus.PENDING.value if pending else sc.ExecutionStatus.IN_PROGRESS.value
        self.trace_id: str | None = None
        # The exemplar labels of every observation this execution makes: built once, shared.
        self.exemplar: dict[str, str] | None = None
        self.span_id: str | None = None
        self.ref = ExecutionRef(
            self.agent, self.trigger, self.task_id, version=self.version, steps=self.steps_total,
            rerun_of=self.rerun_of,
        )  # completed on enter  # fmt: skip
        self._init_lifecycle(clean_reason(state, pending) if pending else None)
        self._span: Any = None
        self._ctx: Any = None
        self._otel_token: Any = None
        self._cv_token: Any = None
        self._steps = itertools.count(1)
        self._open: dict[Step, None] = {}  # steps entered and not ended, in order
        self._abort_why: str | None = None  # set when the end ends the open steps: why they failed
        self._outcome: tuple[str, str | None, str | None] | None = None
        self._score_sum = 0.0
        self._score_n = 0
        self._tokens_in = 0
        self._tokens_out = 0
        self._tokens_cr = 0  # cache read / write parts of _tokens_in
        self._tokens_cw = 0
        self._cost = 0.0  # USD of the priced usage
        self._priced = False  # some usage was priced
        self._unpriced = 0  # tokens of models with no known price
        self._resume = _resume
        self._sampling: Sampling | None = None  # set when this execution's spans are held
        self._flagged: str | None = None  # a step's reason to keep the trace (SamplingReason)
        self._head_dropped = False  # the head sampler dropped the trace (counted as such)
        self._content: dict[str, str] = {}  # captured input / output, before the span exists

    # ------------------------------------------------------------------ enter / exit

    def __enter__(self) -> Execution:
        try:
            self._begin()
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "execution enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        try:
            self._exit(exc)
        except Exception as err:  # noqa: BLE001
            internal_error(self._state, "execution exit", err)
        return False

    async def __aenter__(self) -> Execution:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def _begin(self) -> None:
        if not self._claim_enter():
            self._state.drop(DropReason.USE_AFTER_END, "an execution was entered twice; ignored")
            return
        st = self._state
        resume = self._resume
        parent = otel_context.get_current()
        if resume is not None and resume.get("traceparent"):
            parent = propagator.extract({"traceparent": resume["traceparent"]})
        attrs: dict[str, Any] = {
            sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_WORKFLOW,
            sc.ATTR_GEN_AI_WORKFLOW_NAME: self.agent,
            sc.ATTR_GEN_AI_AGENT_NAME: self.agent,
            sc.ATTR_TASK_ID: self.task_id,
            sc.ATTR_TASK_TRIGGER: self.trigger,
        }
        if self.description is not None:
            attrs[sc.ATTR_TASK_DESCRIPTION] = self._description = clean_text(self.description, 1024)
        if self.version is not None:
            attrs[sc.ATTR_GEN_AI_AGENT_VERSION] = self.version
        if self.steps_total is not None:
            attrs[sc.ATTR_TASK_STEPS_TOTAL] = self.steps_total
        if self.rerun_of is not None:
            attrs[sc.ATTR_TASK_RERUN_OF] = self.rerun_of
        attrs.update(self._content)
        self._span = span = st.tracing.tracer.start_span(
            sc.SPAN_EXECUTION.format(agent=self.agent), context=parent, kind=SpanKind.INTERNAL, attributes=attrs
        )
        self.trace_id, self.span_id = hex_ids(span)
        # prometheus_client drops exemplars in multiprocess mode: do not build them there. An
        # exemplar links only to a trace that will be exported (the head sampler kept it, and with
        # sampling on, its trace id is in the healthy fraction; a failure links it at the decision).
        linked = self._hold(span.get_span_context(), resume is not None)
        self.exemplar = exemplar_of(self.trace_id) if linked and self._rec.exemplars else None
        self.ref = ExecutionRef(
            self.agent, self.trigger, self.task_id, self.trace_id, self.span_id, self.exemplar, self.version,
            self.steps_total, self.rerun_of,
        )  # fmt: skip
        self._ctx = trace.set_span_in_context(span, parent)
        self._otel_token = otel_context.attach(self._ctx)
        self._cv_token = current_execution_var.set(self)
        if resume is not None:
            self._restore(resume)
        self._opened()

    def _hold(self, ctx: trace.SpanContext, resumed: bool) -> bool:
        """Hold this trace's spans when sampling is on; True if the trace is known to be kept."""
        if not ctx.trace_flags.sampled:
            self._head_dropped = ctx.is_valid
            return False
        samp = self._state.sampling
        if samp is None or not samp.hold(ctx.trace_id):
            return True
        self._sampling = samp
        return resumed or samp.keeps_healthy(ctx.trace_id)

    def _flag(self, reason: SamplingReason) -> None:
        """A step failed or was flagged: the trace will be kept, so observations may link to it."""
        if self._sampling is not None and self._flagged is None:
            self._flagged = reason.value
            self._link()

    def _link(self) -> None:
        if self.exemplar is None and self._rec.exemplars:
            self.exemplar = exemplar_of(self.trace_id)
            self.ref = self.ref._replace(exemplar=self.exemplar)

    def _end_attrs(self) -> dict[str, Any]:
        """The attributes every part's span ends with: its status, the tokens used and their cost so far."""
        attrs: dict[str, Any] = {
            sc.ATTR_TASK_STATUS: self.status,
            sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: self._tokens_in,
            sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: self._tokens_out,
        }
        if self._tokens_cr:
            attrs[sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS] = self._tokens_cr
        if self._tokens_cw:
            attrs[sc.ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS] = self._tokens_cw
        cost = self.cost
        if cost is not None:
            attrs[sc.ATTR_TASK_COST_USD] = cost
        if self._unpriced:
            attrs[sc.ATTR_TASK_UNPRICED_TOKENS] = self._unpriced
        return attrs

    @property
    def cost(self) -> float | None:
        """USD of this execution's priced model usage so far; None when prices are off, or when it
        used models and none of them has a price (`agent_llm_unpriced_tokens_total` counts those)."""
        if self._state.prices is None or (self._unpriced and not self._priced):
            return None
        return self._cost

    def _end_span(self, status: str | None, cause: str | None, runtime: float, attrs: dict[str, Any]) -> bool | None:
        """End this part's span with `attrs` and the sampling decision: True if its trace is exported,
        False if sampling dropped it, None if the library's spans go nowhere (nothing to link)."""
        held = self._sampling is not None
        reason = self._decide(status, cause, runtime, attrs)
        self._span.set_attributes(attrs)
        self._span.end()
        self._release(reason)
        if not self._state.tracing.exports():
            return None
        return self.trace_id is not None and not self._head_dropped and (not held or reason is not None)

    def _decide(self, status: str | None, cause: str | None, runtime: float, attrs: dict[str, Any]) -> str | None:
        """Before the span ends: the keep reason on the span, and the exemplar when kept."""
        samp = self._sampling
        if samp is None:
            return None
        trace_id = self._span.get_span_context().trace_id
        over = runtime > self.objectives.max_runtime_seconds
        reason = samp.decide(trace_id, status, cause, self._flagged, over, self._resume is not None)
        if reason is not None:
            attrs[sc.ATTR_TASK_SAMPLING_REASON] = reason
            self._link()
        return reason

    def _release(self, reason: str | None) -> None:
        """After the span ended: export the held trace (reason given) or drop it."""
        samp = self._sampling
        if samp is not None:
            self._sampling = None
            samp.release(self._span.get_span_context().trace_id, reason)
        elif self.trace_id is not None and self._state.sampling is not None:  # not held: kept, or never sampled
            reason = SamplingReason.HEAD_SAMPLER if self._head_dropped else SamplingReason.KEEP_ALL
            self._state.sampling.count(reason.value)

    def _restore(self, c: Mapping[str, Any]) -> None:
        """Continue an execution suspended elsewhere: same trace, its counts carried over."""
        self._started = bool(c.get("started", False))
        self._active = float(c.get("active", 0.0))
        self._steps = itertools.count(int(c.get("steps", 0)) + 1)
        self._score_sum = float(c.get("score_sum", 0.0))
        self._score_n = int(c.get("score_n", 0))
        self._tokens_in = int(c.get("tokens_in", 0))
        self._tokens_out = int(c.get("tokens_out", 0))
        self._tokens_cr = int(c.get("tokens_cache_read", 0))
        self._tokens_cw = int(c.get("tokens_cache_write", 0))
        self._unpriced = int(c.get("unpriced_tokens", 0))
        if "cost_usd" in c:
            self._cost = float(c["cost_usd"])
            self._priced = True
        reason = c.get("reason", PendingReason.APPROVAL.value)
        event: dict[str, Any] = {sc.ATTR_PENDING_REASON: reason}
        waited = None  # unknown when the carrier's suspended_at was damaged: not observed
        if "suspended_at" in c:
            waited = max(0.0, time.time() - float(c["suspended_at"]))
            event[sc.ATTR_PENDING_SECONDS] = waited
        self._span.add_event(sc.EVENT_RESUMED, event)
        self._rec.record(ExecutionResumed(self.ref, reason, None, waited))

    def _exit(self, exc: BaseException | None) -> None:
        try:
            if self._leave(ENDED) is not None:
                self._finish(exc)
            elif exc is not None and self._phase == SUSPENDED:
                self._state.drop(
                    DropReason.USE_AFTER_END, f"exception after suspend() not recorded here: {type(exc).__name__}"
                )
        finally:
            self._detach()

    def _detach(self) -> None:
        cv, otel = self._cv_token, self._otel_token
        self._cv_token = self._otel_token = None
        restore_context(current_execution_var, cv, otel)

    def _finish(self, exc: BaseException | None, timed_out: bool = False) -> None:
        """For the one caller that moved the execution to ended: its outcome, the open steps, the
        span and `ExecutionFinished`. No `fail()`/`cancel()` lands after that move."""
        rec = self._rec
        cause: str | None
        message: str | None
        if timed_out:
            status, cause = EXEC_FAILED, FailureCause.TIMEOUT.value
            message = f"execution exceeded its maximum duration of {self.max_duration:g}s"
        elif self._outcome is not None:
            status, cause, message = self._outcome
        elif exc is None:
            status, cause, message = COMPLETED, None, None
        else:
            status, cause, message = EXEC_FAILED, cause_of(exc).value, exc_text(exc)
        runtime = self._active
        if status == COMPLETED and self.max_duration is not None and runtime > self.max_duration:
            status, cause = EXEC_FAILED, FailureCause.TIMEOUT.value
            message = f"execution ran {runtime:.1f}s, over its maximum duration of {self.max_duration:g}s"
        self.status = status
        attrs = self._end_attrs()
        mean = None
        if self._score_n:
            mean = self._score_sum / self._score_n
            attrs[sc.ATTR_TASK_EVALUATION_SCORE] = mean
        self._abort_open_steps(cause or FailureCause.ERROR.value if status == EXEC_FAILED else status)
        span = self._span
        if status == EXEC_FAILED:
            cause = cause or FailureCause.ERROR.value
            attrs[sc.ATTR_TASK_FAILURE_CAUSE] = cause
            if exc is not None:
                attrs[sc.ATTR_ERROR_TYPE] = type(exc).__qualname__
                record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, message or cause))
        kept = self._end_span(status, cause, runtime, attrs)
        rec.record(ExecutionFinished(self.ref, status, cause, runtime, mean, message, kept, self.cost))

    def _abort_open_steps(self, why: str) -> None:
        """Steps still open when the execution ends (a watchdog timeout, `end()` from elsewhere)
        did not pass: each is ended now as failed, its `error.type` the execution's cause. A step
        entered meanwhile reads `why` after it joined the open steps: found here, or it ends itself."""
        self._abort_why = why
        for step in list(self._open.copy()):  # copy() is atomic; the steps' exits may run meanwhile
            step._abort(why)

    def _timeout_from_watchdog(self) -> None:
        try:
            if self._leave(ENDED, timed_out=True) is not None:
                self._finish(None, timed_out=True)
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "watchdog", exc)

    # ------------------------------------------------------------------ public API

    def step(self, name: Any, tool: Any = None) -> Step | NoopStep:
        """A context manager (sync and async) for one step of this execution."""
        try:
            return Step(self, name, tool)
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "step()", exc)
            return NOOP_STEP

    def record_input(self, obj: Any) -> None:
        """Capture the execution's input (the task it was given): on its span and in the task store,
        masked, redacted and truncated like a step's; nothing with `capture_content=False`."""
        self._capture("input", sc.ATTR_TASK_INPUT, obj)

    def record_output(self, obj: Any) -> None:
        """Capture the execution's output (its result), like `record_input()`."""
        self._capture("output", sc.ATTR_TASK_OUTPUT, obj)

    def _capture(self, kind: str, key: str, obj: Any) -> None:
        try:
            if self._over(f"record_{kind}()"):
                return
            text = captured(self._state, key, obj)
            if text is None:
                return
            span = self._span
            if span is None:
                self._content[key] = text  # set when the span starts
            else:
                span.set_attribute(key, text)
            if self._rec.listened:
                self._rec.record(ExecutionContent(self.ref, kind, text))
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, f"record_{kind}()", exc)

    def fail(self, cause: Any = FailureCause.ERROR.value, message: str | None = None) -> None:
        """Mark the execution failed with `cause`; recorded when it ends (exit or `end()`)."""
        try:
            if self._over("fail()"):
                return
            c = cause.value if isinstance(cause, FailureCause) else cause
            if not isinstance(c, str) or c not in CAUSES:  # unhashable must not raise
                self._state.drop(
                    DropReason.UNKNOWN_CAUSE,
                    f"failure cause {cause!r} is not one of {sorted(CAUSES)}; recorded as 'error'",
                )
                message = f"{message} (cause {cause!r})" if message else f"cause {cause!r}"
                c = FailureCause.ERROR.value
            self._set_outcome("fail()", (EXEC_FAILED, c, None if message is None else clean_text(message, 1000)))
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "fail()", exc)

    def cancel(self, message: str | None = None) -> None:
        """Mark the execution cancelled (counts in neither side of the completion rate)."""
        try:
            if self._over("cancel()"):
                return
            self._set_outcome("cancel()", (CANCELLED, None, None if message is None else clean_text(message, 1000)))
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "cancel()", exc)

    def _over(self, what: str) -> bool:
        """True, and counted, when the execution is already over: a late call changes nothing."""
        if self.ended:
            self._state.drop(DropReason.USE_AFTER_END, f"{what} on an execution that already ended")
            return True
        return False

    def _set_outcome(self, what: str, outcome: tuple[str, str | None, str | None]) -> None:
        """The outcome the end records; decided under the lock, so none lands after the end."""
        with self._lock:
            if not self.ended:
                self._outcome = outcome
                return
        self._over(what)

    def end(self, exc: BaseException | None = None) -> None:
        """End an execution started with `start_execution()` (the `with` form calls this)."""
        self.__exit__(type(exc) if exc else None, exc, None)

    def start(self) -> None:
        """Leave the pending state and run (entering a step does this by itself)."""
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "start()", exc)

    def wait(self, reason: str = PendingReason.APPROVAL.value) -> None:
        """Pause in this process (e.g. awaiting approval); time pending is not runtime."""
        try:
            if not self._wait(clean_reason(self._state, reason)):
                self._state.drop(DropReason.USE_AFTER_END, "wait() on an execution that already ended")
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "wait()", exc)

    def suspend(self, reason: str = PendingReason.APPROVAL.value) -> dict[str, Any]:
        """End this process's part and return a small JSON-able carrier for `resume_execution()`."""
        try:
            reason = clean_reason(self._state, reason)
            if self._leave(SUSPENDED) is None:
                self._state.drop(DropReason.USE_AFTER_END, "suspend() on an execution that is not running")
                return {}
            carrier = make_carrier(
                self._ctx,
                agent=self.agent,
                trigger=self.trigger,
                task_id=self.task_id,
                reason=reason,
                active=self._active,
                steps=next(self._steps) - 1,
                started=self._started,
                score_sum=self._score_sum,
                score_n=self._score_n,
                tokens_in=self._tokens_in,
                tokens_out=self._tokens_out,
                description=self._description,
                max_duration=self.max_duration,
                version=self.version,
                steps_total=self.steps_total,
                **self._usage_carried(),
            )
            self.status = sc.ExecutionStatus.PENDING.value
            self._span.add_event(sc.EVENT_PENDING, {sc.ATTR_PENDING_REASON: reason})
            kept = self._end_span(None, None, self._active, self._end_attrs())
            self._rec.record(ExecutionSuspended(self.ref, reason, carrier["suspended_at"], kept))
            return carrier
        except Exception as exc:  # noqa: BLE001
            internal_error(self._state, "suspend()", exc)
            return {}

    def _add_score(self, score: float) -> None:
        with self._lock:
            self._score_sum += score
            self._score_n += 1

    def _usage_carried(self) -> dict[str, Any]:
        """The carrier's optional usage fields: only those with something in them."""
        out: dict[str, Any] = {}
        if self._priced:
            out["cost_usd"] = self._cost
        for key, n in (("unpriced_tokens", self._unpriced), ("tokens_cache_read", self._tokens_cr),
                       ("tokens_cache_write", self._tokens_cw)):  # fmt: skip
            if n:
                out[key] = n
        return out

    def _add_usage(self, tin: int, tout: int, tcr: int, tcw: int, cost: float | None, unpriced: int) -> None:
        with self._lock:
            self._tokens_in += tin
            self._tokens_out += tout
            self._tokens_cr += tcr
            self._tokens_cw += tcw
            if cost is not None:
                self._cost += cost
                self._priced = True
            self._unpriced += unpriced
