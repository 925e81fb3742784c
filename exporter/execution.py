"""Executions, steps and tool calls: the context managers agent code writes against.

Each object starts its span on enter and, on exit, makes one round of records: span attributes
set in one call, metric children looked up in a cache, one log event. Telemetry never raises
into the agent: every entry point catches its own failures at one boundary and counts them in
`agent_exporter_dropped_total`; the agent's own exceptions are recorded and pass through.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Literal, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import _config
from . import semconv as sc
from .content import capture, clean_text
from .errors import cause_of, tool_outcome_of
from .metrics import exemplar_of
from .semconv import DropReason, FailureCause, PendingReason, StepStatus

F = TypeVar("F", bound=Callable[..., Any])

_current_execution: ContextVar[Execution | None] = ContextVar("agent_exporter_execution", default=None)
_current_step: ContextVar[Step | None] = ContextVar("agent_exporter_step", default=None)
_propagator = TraceContextTextMapPropagator()

_DEBUG, _INFO, _WARNING = 10, 20, 30
_LOG_METHOD = {_DEBUG: "debug", _INFO: "info", _WARNING: "warning"}
_PASSED, _FAILED, _NEEDS_REVIEW = StepStatus.PASSED.value, StepStatus.FAILED.value, StepStatus.NEEDS_REVIEW.value
_COMPLETED, _EXEC_FAILED, _CANCELLED = "completed", "failed", "cancelled"
_STATUS_RANK = {_PASSED: 0, _NEEDS_REVIEW: 1, _FAILED: 2}
_CAUSES = frozenset(c.value for c in FailureCause)
_REASONS = frozenset(r.value for r in PendingReason)
_KNOWN_TRIGGERS = frozenset(t.value for t in sc.Trigger)
CARRIER_VERSION = 1

# Execution life cycle inside this process.
_CREATED, _PENDING, _RUNNING, _SUSPENDED, _ENDED = range(5)


def _internal(state: _config.State | None, where: str, exc: BaseException) -> None:
    """A bug in the library: count it and carry on; the agent must not notice."""
    if state is not None:
        state.drop(DropReason.INTERNAL_ERROR, f"internal error in {where}: {type(exc).__name__}: {exc}")


def _exc_text(exc: BaseException) -> str:
    """`Type: message` of an exception for a span status or a log: masked, bounded, never raising."""
    return clean_text(f"{type(exc).__name__}: {clean_text(exc, 1000)}", 1000)


def _record_exception(span: Any, exc: BaseException) -> None:
    """The span's `exception` event, like `Span.record_exception` but with the message masked.

    The SDK's own version calls `str(exc)` (which user exceptions may make raise) and puts the
    message and the traceback on the span as they are, secrets included.
    """
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001
        stack = ""
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__qualname__,
            "exception.message": clean_text(exc, 1000),
            "exception.stacktrace": clean_text(stack, 8192),
            "exception.escaped": "False",
        },
    )


def _restore_context(var: ContextVar[Any] | None, cv_token: Any, otel_token: Any) -> None:
    """Undo what enter attached. A token made in another context (an exit in another thread or
    task) cannot be reset there; that is the caller's business, not an error to raise."""
    if var is not None and cv_token is not None:
        try:
            var.reset(cv_token)
        except Exception:  # noqa: BLE001
            pass
    if otel_token is not None:
        try:
            otel_context.detach(otel_token)
        except Exception:  # noqa: BLE001
            pass


def _hex_ids(span: trace.Span) -> tuple[str | None, str | None]:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# ============================================================================ watchdog


class _Watchdog:
    """One daemon thread that fails executions running past their maximum duration.

    A hung execution never reaches its `__exit__`; without this, the alert on runtime would
    never see it. The thread runs only while some execution has a deadline.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._deadlines: dict[int, tuple[float, weakref.ref[Execution]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, run: Execution, deadline: float) -> None:
        with self._lock:
            self._deadlines[id(run)] = (deadline, weakref.ref(run))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agent-exporter-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, run: Execution) -> None:
        with self._lock:
            self._deadlines.pop(id(run), None)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                if not self._deadlines:
                    self._thread = None
                    return
                due = [ref for d, ref in self._deadlines.values() if d <= now]
            for ref in due:
                run = ref()
                if run is not None:
                    run._timeout_from_watchdog()


_watchdog = _Watchdog()


# ============================================================================ no-op objects


class _Noop:
    """Stands in when the library is unconfigured, or an object could not be built."""

    __slots__ = ()
    task_id = ""
    trace_id = None
    agent = ""
    status = ""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        return False

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> Literal[False]:
        return False

    def __getattr__(self, name: str) -> Any:
        return _noop_call

    def suspend(self, reason: str = "approval") -> dict[str, Any]:
        return {}

    def step(self, name: Any = None, tool: Any = None, **_: Any) -> _Noop:
        return NOOP

    def tool_call(self, tool: Any = None, **_: Any) -> _Noop:
        return NOOP


def _noop_call(*_args: Any, **_kw: Any) -> None:
    return None


NOOP = _Noop()


# ============================================================================ execution


class Execution:
    """One task execution: a span, its steps, and its metrics at the end.

    Use as `with` / `async with`; a normal exit completes it, an exception fails it (cause from
    the exception) and passes through. `fail()` and `cancel()` set the outcome that the exit
    records; `suspend()` hands the execution to another process.
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
        _resume: Mapping[str, Any] | None = None,
    ) -> None:
        m = state.metrics
        self._state = state
        # Names (cleaned, masked, bounded) go on spans and logs; labels (capped) on metrics only.
        self.agent, self._agent_label = m.agent_names(agent)
        self.trigger, self._trigger_label = m.names(self._agent_label, "trigger", trigger)
        if self.trigger not in _KNOWN_TRIGGERS:
            state.warnings.warn(
                f"trigger:{self.trigger}",
                f"unknown trigger {self.trigger!r} (known: {', '.join(sorted(_KNOWN_TRIGGERS))}); recorded as given",
            )
        self.task_id = str(task_id) if task_id is not None else uuid.uuid4().hex
        self.description = description
        self.objectives = state.settings.objectives_for(self.agent)
        md = max_duration if max_duration is not None else state.settings.max_duration
        if md is not None and (not isinstance(md, int | float) or not md > 0):
            m.drop(DropReason.INVALID_USAGE, f"max_duration {md!r} is not > 0; ignored")
            md = None
        self.max_duration = md
        self.status = sc.ExecutionStatus.PENDING.value if pending else sc.ExecutionStatus.IN_PROGRESS.value
        self.trace_id: str | None = None
        # The exemplar labels of every observation this execution makes: built once, shared.
        self.exemplar: dict[str, str] | None = None
        self.span_id: str | None = None
        self._pending_reason = self._clean_reason(pending) if pending else None
        self._phase = _CREATED
        self._lock = threading.Lock()
        self._span: Any = None
        self._ctx: Any = None
        self._otel_token: Any = None
        self._cv_token: Any = None
        self._steps = itertools.count(1)
        self._run_t0 = 0.0
        self._active = 0.0
        self._pending_since = 0.0
        self._started = False
        self._outcome: tuple[str, str | None, str | None] | None = None
        self._score_sum = 0.0
        self._score_n = 0
        self._tokens_in = 0
        self._tokens_out = 0
        self._resume = _resume

    # ------------------------------------------------------------------ helpers

    def _clean_reason(self, reason: Any) -> str:
        if isinstance(reason, str) and reason in _REASONS:
            return reason
        self._state.drop(
            DropReason.UNKNOWN_REASON,
            f"pending reason {reason!r} is not one of {sorted(_REASONS)}; recorded as 'queued'",
        )
        return PendingReason.QUEUED.value

    def _log(self, level: int, event: str, **kw: Any) -> None:
        if self._state.logs(level):
            try:
                fn = _LOG_METHOD[level]
                fields = {
                    "trace_id": self.trace_id,
                    "span_id": self.span_id,
                    "task_id": self.task_id,
                    "agent": self.agent,
                    "trigger": self.trigger,
                }
                fields.update(kw)  # a step's event carries the step's span_id
                getattr(self._state.log, fn)(event, **fields)
            except Exception as exc:  # noqa: BLE001 - a broken log pipeline must not reach the agent
                _internal(self._state, f"logging {event}", exc)

    @property
    def ended(self) -> bool:
        return self._phase in (_ENDED, _SUSPENDED)

    # ------------------------------------------------------------------ enter / exit

    def __enter__(self) -> Execution:
        try:
            self._begin()
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "execution enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        try:
            self._exit(exc)
        except Exception as err:  # noqa: BLE001
            _internal(self._state, "execution exit", err)
        return False

    async def __aenter__(self) -> Execution:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def _begin(self) -> None:
        if self._phase != _CREATED:
            self._state.drop(DropReason.USE_AFTER_END, "an execution was entered twice; ignored")
            return
        st = self._state
        resume = self._resume
        parent = otel_context.get_current()
        if resume is not None and resume.get("traceparent"):
            parent = _propagator.extract({"traceparent": resume["traceparent"]})
        attrs: dict[str, Any] = {
            sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_WORKFLOW,
            sc.ATTR_GEN_AI_WORKFLOW_NAME: self.agent,
            sc.ATTR_GEN_AI_AGENT_NAME: self.agent,
            sc.ATTR_TASK_ID: self.task_id,
            sc.ATTR_TASK_TRIGGER: self.trigger,
        }
        if self.description is not None:
            attrs[sc.ATTR_TASK_DESCRIPTION] = clean_text(self.description, 1024)
        self._span = span = st.tracing.tracer.start_span(
            sc.SPAN_EXECUTION.format(agent=self.agent), context=parent, kind=SpanKind.INTERNAL, attributes=attrs
        )
        self.trace_id, self.span_id = _hex_ids(span)
        # prometheus_client drops exemplars in multiprocess mode: do not build them there.
        self.exemplar = exemplar_of(self.trace_id) if st.metrics.exemplars else None
        self._ctx = trace.set_span_in_context(span, parent)
        self._otel_token = otel_context.attach(self._ctx)
        self._cv_token = _current_execution.set(self)
        if resume is not None:
            self._restore(resume)
            return
        if self._pending_reason is not None:
            self._enter_pending(self._pending_reason)
        else:
            self._start_running()

    def _restore(self, c: Mapping[str, Any]) -> None:
        """Continue an execution suspended elsewhere: same trace, its counts carried over."""
        self._started = bool(c.get("started", True))
        self._active = float(c.get("active", 0.0))
        self._steps = itertools.count(int(c.get("steps", 0)) + 1)
        self._score_sum = float(c.get("score_sum", 0.0))
        self._score_n = int(c.get("score_n", 0))
        self._tokens_in = int(c.get("tokens_in", 0))
        self._tokens_out = int(c.get("tokens_out", 0))
        reason = c.get("reason", PendingReason.APPROVAL.value)
        waited = max(0.0, time.time() - float(c.get("suspended_at", time.time())))
        self.status = sc.ExecutionStatus.PENDING.value
        self._pending_reason = reason
        self._span.add_event(sc.EVENT_RESUMED, {sc.ATTR_PENDING_REASON: reason, sc.ATTR_PENDING_SECONDS: waited})
        m = self._state.metrics
        m.child(sc.EXECUTION_PENDING_DURATION, self._agent_label, reason).observe(waited, self.exemplar)
        self._pending_reason = None
        self._start_running(resumed=True)
        self._log(_INFO, sc.LOG_EXECUTION_RESUMED, reason=reason, pending_seconds=round(waited, 3))

    def _start_running(self, resumed: bool = False) -> None:
        m = self._state.metrics
        if not self._started:
            self._started = True
            m.child(sc.EXECUTIONS_STARTED, self._agent_label, self._trigger_label).inc()
        m.child(sc.EXECUTIONS_IN_PROGRESS, self._agent_label).inc()
        self.status = sc.ExecutionStatus.IN_PROGRESS.value
        self._phase = _RUNNING
        self._run_t0 = time.perf_counter()
        if self.max_duration is not None:
            _watchdog.watch(self, time.monotonic() + max(0.0, self.max_duration - self._active))
        if not resumed:
            self._log(_DEBUG, sc.LOG_EXECUTION_STARTED)

    def _enter_pending(self, reason: str) -> None:
        self._pending_reason = reason
        self._pending_since = time.time()
        self._phase = _PENDING
        self.status = sc.ExecutionStatus.PENDING.value
        self._state.metrics.pending_add(self._agent_label, reason, id(self), self._pending_since)
        self._span.add_event(sc.EVENT_PENDING, {sc.ATTR_PENDING_REASON: reason})

    def _leave_pending(self) -> float:
        reason = self._pending_reason or PendingReason.QUEUED.value
        waited = max(0.0, time.time() - self._pending_since)
        m = self._state.metrics
        m.pending_remove(self._agent_label, reason, id(self))
        m.child(sc.EXECUTION_PENDING_DURATION, self._agent_label, reason).observe(waited, self.exemplar)
        self._pending_reason = None
        return waited

    def _stop_running(self) -> None:
        """Leave the running phase: accumulate active time, leave the in-progress gauge."""
        self._active += time.perf_counter() - self._run_t0
        self._state.metrics.child(sc.EXECUTIONS_IN_PROGRESS, self._agent_label).dec()
        if self.max_duration is not None:
            _watchdog.unwatch(self)

    def _exit(self, exc: BaseException | None) -> None:
        try:
            if self._phase in (_RUNNING, _PENDING):
                if self._outcome is not None:
                    status, cause, message = self._outcome
                    self._finish(status, cause, message, exc)
                elif exc is None:
                    self._finish(_COMPLETED, None, None, None)
                else:
                    self._finish(_EXEC_FAILED, cause_of(exc).value, _exc_text(exc), exc)
            elif exc is not None and self._phase == _SUSPENDED:
                self._state.drop(
                    DropReason.USE_AFTER_END, f"exception after suspend() not recorded here: {type(exc).__name__}"
                )
        finally:
            self._detach()

    def _detach(self) -> None:
        cv, otel = self._cv_token, self._otel_token
        self._cv_token = self._otel_token = None
        _restore_context(_current_execution, cv, otel)

    def _finish(self, status: str, cause: str | None, message: str | None, exc: BaseException | None) -> bool:
        with self._lock:
            if self._phase not in (_RUNNING, _PENDING):
                return False
            was = self._phase
            self._phase = _ENDED
        st = self._state
        m = st.metrics
        if was == _RUNNING:
            self._stop_running()
        else:
            self._leave_pending()
            if not self._started:  # cancelled or failed while queued: started and finished
                self._started = True
                m.child(sc.EXECUTIONS_STARTED, self._agent_label, self._trigger_label).inc()
        runtime = self._active
        if status == _COMPLETED and self.max_duration is not None and runtime > self.max_duration:
            status, cause = _EXEC_FAILED, FailureCause.TIMEOUT.value
            message = f"execution ran {runtime:.1f}s, over its maximum duration of {self.max_duration:g}s"
        self.status = status
        ex = self.exemplar
        m.child(sc.EXECUTIONS_FINISHED, self._agent_label, self._trigger_label, status).inc()
        m.child(sc.EXECUTION_DURATION, self._agent_label, self._trigger_label, status).observe(runtime, ex)
        attrs: dict[str, Any] = {
            sc.ATTR_TASK_STATUS: status,
            sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: self._tokens_in,
            sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: self._tokens_out,
        }
        if self._score_n:
            mean = self._score_sum / self._score_n
            attrs[sc.ATTR_TASK_EVALUATION_SCORE] = mean
            m.child(sc.EXECUTION_EVALUATION_SCORE, self._agent_label, self._trigger_label).observe(mean, ex)
        span = self._span
        if status == _EXEC_FAILED:
            cause = cause or FailureCause.ERROR.value
            attrs[sc.ATTR_TASK_FAILURE_CAUSE] = cause
            m.child(sc.EXECUTION_FAILURES, self._agent_label, self._trigger_label, cause).inc(exemplar=ex)
            if exc is not None:
                attrs[sc.ATTR_ERROR_TYPE] = type(exc).__qualname__
                _record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, message or cause))
        span.set_attributes(attrs)
        span.end()
        if status == _EXEC_FAILED:
            self._log(
                _WARNING,
                sc.LOG_EXECUTION_FAILED,
                status=status,
                cause=cause,
                error=message,
                duration_seconds=round(runtime, 6),
            )
        else:
            self._log(_INFO, sc.LOG_EXECUTION_FINISHED, status=status, duration_seconds=round(runtime, 6))
        return True

    def _timeout_from_watchdog(self) -> None:
        try:
            if self._phase == _RUNNING:
                self._finish(
                    _EXEC_FAILED,
                    FailureCause.TIMEOUT.value,
                    f"execution exceeded its maximum duration of {self.max_duration:g}s",
                    None,
                )
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "watchdog", exc)

    # ------------------------------------------------------------------ public API

    def step(self, name: Any, tool: Any = None) -> Step | _Noop:
        """A context manager (sync and async) for one step of this execution."""
        try:
            return Step(self, name, tool)
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "step()", exc)
            return NOOP

    def fail(self, cause: Any = FailureCause.ERROR.value, message: str | None = None) -> None:
        """Mark the execution failed with `cause`; recorded when it ends (exit or `end()`)."""
        try:
            if self.ended:
                self._state.drop(DropReason.USE_AFTER_END, "fail() on an execution that already ended")
                return
            c = cause.value if isinstance(cause, FailureCause) else cause
            if not isinstance(c, str) or c not in _CAUSES:  # unhashable must not raise
                self._state.drop(
                    DropReason.UNKNOWN_CAUSE,
                    f"failure cause {cause!r} is not one of {sorted(_CAUSES)}; recorded as 'error'",
                )
                message = f"{message} (cause {cause!r})" if message else f"cause {cause!r}"
                c = FailureCause.ERROR.value
            self._outcome = (_EXEC_FAILED, c, None if message is None else clean_text(message, 1000))
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "fail()", exc)

    def cancel(self, message: str | None = None) -> None:
        """Mark the execution cancelled (counts in neither side of the completion rate)."""
        if self.ended:
            self._state.drop(DropReason.USE_AFTER_END, "cancel() on an execution that already ended")
            return
        self._outcome = (_CANCELLED, None, None if message is None else clean_text(message, 1000))

    def end(self, exc: BaseException | None = None) -> None:
        """End an execution started with `start_execution()` (the `with` form calls this)."""
        self.__exit__(type(exc) if exc else None, exc, None)

    def start(self) -> None:
        """Leave the pending state and run (entering a step does this by itself)."""
        try:
            if self._phase == _PENDING:
                waited = self._leave_pending()
                self._span.add_event(sc.EVENT_RESUMED, {sc.ATTR_PENDING_SECONDS: waited})
                self._start_running()
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "start()", exc)

    resume = start

    def wait(self, reason: str = PendingReason.APPROVAL.value) -> None:
        """Pause in this process (e.g. awaiting approval); time pending is not runtime."""
        try:
            if self._phase == _RUNNING:
                self._stop_running()
                self._enter_pending(self._clean_reason(reason))
            elif self.ended:
                self._state.drop(DropReason.USE_AFTER_END, "wait() on an execution that already ended")
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "wait()", exc)

    def suspend(self, reason: str = PendingReason.APPROVAL.value) -> dict[str, Any]:
        """End this process's part and return a small JSON-able carrier for `resume_execution()`."""
        try:
            reason = self._clean_reason(reason)
            with self._lock:
                if self._phase not in (_RUNNING, _PENDING):
                    self._state.drop(DropReason.USE_AFTER_END, "suspend() on an execution that is not running")
                    return {}
                was = self._phase
                self._phase = _SUSPENDED
            if was == _RUNNING:
                self._stop_running()
            else:
                self._leave_pending()
            carrier: dict[str, Any] = {}
            _propagator.inject(carrier, context=self._ctx)
            carrier.update(
                {
                    "v": CARRIER_VERSION,
                    "agent": self.agent,
                    "trigger": self.trigger,
                    "task_id": self.task_id,
                    "reason": reason,
                    "suspended_at": time.time(),
                    "active": self._active,
                    "steps": next(self._steps) - 1,
                    "started": self._started,
                    "score_sum": self._score_sum,
                    "score_n": self._score_n,
                    "tokens_in": self._tokens_in,
                    "tokens_out": self._tokens_out,
                }
            )
            if self.description is not None:
                carrier["description"] = clean_text(self.description, 1024)
            if self.max_duration is not None:
                carrier["max_duration"] = self.max_duration
            self.status = sc.ExecutionStatus.PENDING.value
            self._span.add_event(sc.EVENT_PENDING, {sc.ATTR_PENDING_REASON: reason})
            self._span.set_attributes(
                {
                    sc.ATTR_TASK_STATUS: self.status,
                    sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: self._tokens_in,
                    sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: self._tokens_out,
                }
            )
            self._span.end()
            self._log(_INFO, sc.LOG_EXECUTION_SUSPENDED, reason=reason)
            return carrier
        except Exception as exc:  # noqa: BLE001
            _internal(self._state, "suspend()", exc)
            return {}

    def _add_score(self, score: float) -> None:
        with self._lock:
            self._score_sum += score
            self._score_n += 1

    def _add_tokens(self, tin: int, tout: int) -> None:
        with self._lock:
            self._tokens_in += tin
            self._tokens_out += tout


# ============================================================================ step


class Step:
    """One workflow node inside an execution; a child span and the step metrics."""

    __slots__ = (
        "run", "name", "label", "tool", "index", "status", "_span", "_ctx", "_tokens", "_t0", "_dead",
        "_tin", "_tout", "_attrs", "__weakref__",
    )  # fmt: skip

    def __init__(self, run: Execution, name: Any, tool: Any = None) -> None:
        self.run = run
        m = run._state.metrics
        self.name, self.label = m.names(run._agent_label, "step", name)
        self.tool: str | None = m.names(run._agent_label, "tool", tool)[0] if tool is not None else None
        self.index = 0
        self.status = _PASSED
        self._span: Any = None
        self._ctx: Any = None
        self._tokens: list[Any] = []
        self._t0 = 0.0
        self._dead = False
        self._tin = 0
        self._tout = 0
        self._attrs: dict[str, Any] = {}

    def _alive(self, what: str) -> bool:
        if self._dead or self._span is None:
            self.run._state.drop(DropReason.USE_AFTER_END, f"{what} on a step that is not running; ignored")
            return False
        return True

    def __enter__(self) -> Step:
        run = self.run
        try:
            if run._phase == _PENDING:
                run.start()
            if run._phase != _RUNNING:
                self._dead = True
                run._state.drop(
                    DropReason.USE_AFTER_END, f"step {self.name!r} used after its execution ended; not recorded"
                )
                return self
            self.index = next(run._steps)
            attrs: dict[str, Any] = {sc.ATTR_STEP_NAME: self.name, sc.ATTR_STEP_INDEX: self.index}
            if self.tool is not None:
                attrs[sc.ATTR_GEN_AI_TOOL_NAME] = self.tool
            self._span = run._state.tracing.tracer.start_span(self.name, context=run._ctx, attributes=attrs)
            self._ctx = trace.set_span_in_context(self._span, run._ctx)
            self._tokens = [otel_context.attach(self._ctx), _current_step.set(self)]
            self._t0 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            self._dead = True
            _internal(run._state, "step enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._dead or self._span is None:
            return False
        try:
            self._end(exc)
        except Exception as err:  # noqa: BLE001
            _internal(self.run._state, "step exit", err)
        finally:
            tokens, self._tokens = self._tokens, []
            if tokens:
                _restore_context(_current_step, tokens[1], tokens[0])
        return False

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def _end(self, exc: BaseException | None) -> None:
        run = self.run
        st = run._state
        dur = time.perf_counter() - self._t0
        span = self._span
        self._dead = True
        if exc is not None:
            self.status = _FAILED
            _record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, _exc_text(exc)))
            self._attrs[sc.ATTR_ERROR_TYPE] = type(exc).__qualname__
        elif self.status == _FAILED:
            span.set_status(Status(StatusCode.ERROR, "step failed its evaluation"))
        attrs = self._attrs
        attrs[sc.ATTR_STEP_STATUS] = self.status
        if self._tin or self._tout:
            attrs[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] = self._tin
            attrs[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = self._tout
        span.set_attributes(attrs)
        span.end()
        m = st.metrics
        m.child(sc.STEPS, run._agent_label, self.label, self.status).inc()
        m.child(sc.STEP_DURATION, run._agent_label, self.label).observe(dur, run.exemplar)
        if st.logs(_DEBUG):
            run._log(
                _DEBUG,
                sc.LOG_STEP_FINISHED,
                step=self.name,
                step_index=self.index,
                status=self.status,
                duration_seconds=round(dur, 6),
                span_id=_hex_ids(span)[1],
            )

    def _mark(self, status: str) -> None:
        if _STATUS_RANK[status] > _STATUS_RANK[self.status]:
            self.status = status

    # ------------------------------------------------------------------ inside a step

    def tool_call(self, tool: Any, call_id: str | None = None) -> ToolCall | _Noop:
        """A context manager for one call to a tool or integration (outcome from the exception)."""
        try:
            if not self._alive("tool_call()"):
                return NOOP
            return ToolCall(self, tool, call_id)
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "tool_call()", exc)
            return NOOP

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
            st = run._state
            m = st.metrics
            value = _clean_score(st, score) if score is not None else None
            if passed is not None and not isinstance(passed, bool):
                passed = bool(passed)
            if passed is None and value is not None:
                limit = threshold if threshold is not None else run.objectives.min_evaluation_score
                passed = value >= limit
            ev_name = m.clean_name(name, "evaluation name")
            event: dict[str, Any] = {sc.ATTR_EVALUATION_NAME: ev_name}
            result = None
            if passed is not None:
                result = sc.EvaluationResult.PASS.value if passed else sc.EvaluationResult.FAIL.value
                event[sc.ATTR_EVALUATION_SCORE_LABEL] = result
                m.child(sc.EVALUATIONS, run._agent_label, self.label, result).inc()
            elif score is None:
                m.drop(DropReason.INVALID_SCORE, f"evaluation {ev_name!r} has neither a score nor passed")
            if value is not None:
                event[sc.ATTR_EVALUATION_SCORE_VALUE] = value
                m.child(sc.STEP_EVALUATION_SCORE, run._agent_label, self.label).observe(value, run.exemplar)
                run._add_score(value)
            if explanation is not None:
                event[sc.ATTR_EVALUATION_EXPLANATION] = clean_text(explanation, 1024)
            self._span.add_event(sc.EVENT_EVALUATION, event)
            if passed is False:
                self._mark(st.settings.evaluation_fail_status)
            elif (
                value is not None and st.settings.review_threshold is not None and value < st.settings.review_threshold
            ):
                self._mark(_NEEDS_REVIEW)
            return result
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "evaluate()", exc)
            return None

    def record_usage(self, input_tokens: Any = 0, output_tokens: Any = 0) -> None:
        """Tokens this step spent (summed per step, per execution, and in `agent_tokens_total`)."""
        try:
            if not self._alive("record_usage()"):
                return
            run = self.run
            m = run._state.metrics
            tin = _clean_count(run._state, input_tokens, "input_tokens")
            tout = _clean_count(run._state, output_tokens, "output_tokens")
            if tin:
                m.child(sc.TOKENS, run._agent_label, self.label, sc.TokenType.INPUT.value).inc(tin)
            if tout:
                m.child(sc.TOKENS, run._agent_label, self.label, sc.TokenType.OUTPUT.value).inc(tout)
            self._tin += tin
            self._tout += tout
            run._add_tokens(tin, tout)
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "record_usage()", exc)

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
            st = self.run._state
            if not st.settings.capture_content:
                return
            text, report = capture(obj, max_bytes=st.settings.max_content_bytes, redact=st.settings.redact)
            if report.unserialisable:
                st.drop(
                    DropReason.CONTENT_UNSERIALISABLE,
                    f"{key}: {report.unserialisable} value(s) not JSON-serialisable; kept as repr()",
                )
            if report.redact_error:
                st.drop(DropReason.REDACT_ERROR, f"{key}: redaction hook failed ({report.notes[-1]}); content withheld")
            if report.truncated_bytes:
                st.drop(
                    DropReason.CONTENT_TRUNCATED,
                    f"{key}: truncated by {report.truncated_bytes} bytes to {st.settings.max_content_bytes}",
                )
            self._attrs[key] = text
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "content capture", exc)

    def branch(
        self, selected: Any, not_selected: Iterable[Any] = (), condition: Any = None, reason: Any = None
    ) -> None:
        """A decision point: the path taken, the paths not taken, the condition and why."""
        try:
            if not self._alive("branch()"):
                return
            run = self.run
            m = run._state.metrics
            path, path_label = m.names(run._agent_label, "path", selected)
            others = [clean_text(p, 256) for p in (not_selected or ())]
            m.child(sc.BRANCH_DECISIONS, run._agent_label, self.label, path_label).inc()
            event: dict[str, Any] = {sc.ATTR_BRANCH_SELECTED: path, sc.ATTR_BRANCH_NOT_SELECTED: others}
            if condition is not None:
                event[sc.ATTR_BRANCH_CONDITION] = clean_text(condition, 1024)
            if reason is not None:
                event[sc.ATTR_BRANCH_REASON] = clean_text(reason, 1024)
            self._span.add_event(sc.EVENT_BRANCH_DECISION, event)
            if run._state.logs(_DEBUG):
                run._log(
                    _DEBUG,
                    sc.LOG_BRANCH_DECISION,
                    step=self.name,
                    selected=path,
                    not_selected=others,
                    span_id=_hex_ids(self._span)[1],
                )
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "branch()", exc)

    def flag_for_review(self, reason: Any = None) -> None:
        """Mark the step `needs_review` (completed, but a human should look)."""
        try:
            if not self._alive("flag_for_review()"):
                return
            self._mark(_NEEDS_REVIEW)
            self._span.add_event(
                sc.EVENT_REVIEW_FLAG, {sc.ATTR_REVIEW_REASON: clean_text(reason, 1024)} if reason is not None else {}
            )
        except Exception as exc:  # noqa: BLE001
            _internal(self.run._state, "flag_for_review()", exc)

    def set_status(self, status: Any) -> None:
        """Set the step's status explicitly ('passed', 'failed', 'needs_review')."""
        if not self._alive("set_status()"):
            return
        if not isinstance(status, str) or status not in _STATUS_RANK:  # unhashable must not raise
            self.run._state.drop(
                DropReason.UNKNOWN_STATUS, f"step status {status!r} is not one of {sorted(_STATUS_RANK)}; ignored"
            )
            return
        self.status = str(status)


# ============================================================================ tool call


class ToolCall:
    """One call to a tool or integration: a grandchild span, a count and a response time."""

    __slots__ = ("step", "tool", "call_id", "_label", "_span", "_t0", "_token")
    _ids = itertools.count(1)

    def __init__(self, step: Step, tool: Any, call_id: str | None) -> None:
        run = step.run
        self.step = step
        self.tool, self._label = run._state.metrics.names(run._agent_label, "tool", tool)
        self.call_id = call_id
        self._span: Any = None
        self._t0 = 0.0
        self._token: Any = None

    def __enter__(self) -> ToolCall:
        try:
            step = self.step
            tracer = step.run._state.tracing.tracer
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
            _internal(self.step.run._state, "tool_call enter", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._span is None:
            return False
        try:
            dur = time.perf_counter() - self._t0
            run = self.step.run
            outcome = tool_outcome_of(exc).value
            if exc is not None:
                _record_exception(self._span, exc)
                self._span.set_attribute(sc.ATTR_ERROR_TYPE, type(exc).__qualname__)
                self._span.set_status(Status(StatusCode.ERROR, _exc_text(exc)))
            self._span.end()
            m = run._state.metrics
            m.child(sc.TOOL_CALLS, run._agent_label, self._label, outcome).inc()
            m.child(sc.TOOL_CALL_DURATION, run._agent_label, self._label).observe(dur, run.exemplar)
        except Exception as err:  # noqa: BLE001
            _internal(self.step.run._state, "tool_call exit", err)
        finally:
            self._span = None
            token, self._token = self._token, None
            _restore_context(None, None, token)
        return False

    async def __aenter__(self) -> ToolCall:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


# ============================================================================ input checks


def _clean_score(st: _config.State, score: Any) -> float | None:
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


def _clean_count(st: _config.State, n: Any, what: str) -> int:
    if n is None or (isinstance(n, int | float) and n == 0):
        return 0
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 2**63:
        return n
    if isinstance(n, bool) or not isinstance(n, float) or not math.isfinite(n) or n < 0 or n >= 2**63:
        st.drop(DropReason.INVALID_USAGE, f"{what}={n!r} is not a count >= 0; not counted")
        return 0
    return int(n)


# ============================================================================ module functions


def execution(
    agent: Any,
    trigger: Any = "manual",
    task_id: Any = None,
    description: Any = None,
    *,
    pending: str | None = None,
    max_duration: float | None = None,
) -> Execution | _Noop:
    """A task execution, as a context manager (`with` or `async with`).

    `pending="queued"` or `"approval"` starts it waiting (time pending is not runtime);
    `max_duration` (seconds, default from `configure()`) fails it with cause `timeout`.
    Unconfigured, this returns a shared no-op object.
    """
    state = _config.current()
    if state is None:
        return NOOP
    try:
        return Execution(state, agent, trigger, task_id, description, pending=pending, max_duration=max_duration)
    except Exception as exc:  # noqa: BLE001
        _internal(state, "execution()", exc)
        return NOOP


def start_execution(
    agent: Any, trigger: Any = "manual", task_id: Any = None, description: Any = None, **kw: Any
) -> Execution | _Noop:
    """`execution(...)` already entered, for code that cannot use `with`; call `run.end()`."""
    return execution(agent, trigger, task_id, description, **kw).__enter__()


def resume_execution(carrier: Any, *, max_duration: float | None = None) -> Execution | _Noop:
    """Continue, in the same trace, an execution that another process `suspend()`ed.

    A forged or corrupted carrier is counted (`invalid_carrier`) and what can be read of it
    starts a new execution in a new trace, so the work is still recorded.
    """
    state = _config.current()
    if state is None:
        return NOOP
    try:
        c = _check_carrier(carrier)
        if c is None:
            agent = carrier.get("agent") if isinstance(carrier, Mapping) else None
            state.drop(
                DropReason.INVALID_CARRIER,
                "resume_execution() got an invalid carrier; starting a new execution in a new trace",
            )
            return Execution(
                state,
                agent if isinstance(agent, str) and agent else sc.UNKNOWN_LABEL_VALUE,
                sc.UNKNOWN_LABEL_VALUE,
                max_duration=max_duration,
            )
        md = max_duration if max_duration is not None else c.get("max_duration")
        return Execution(
            state, c["agent"], c["trigger"], c["task_id"], c.get("description"), max_duration=md, _resume=c
        )
    except Exception as exc:  # noqa: BLE001
        _internal(state, "resume_execution()", exc)
        return NOOP


_CARRIER_TYPES: dict[str, type | tuple[type, ...]] = {
    "traceparent": str,
    "agent": str,
    "trigger": str,
    "task_id": str,
    "reason": str,
    "suspended_at": (int, float),
    "active": (int, float),
    "steps": int,
    "started": bool,
    "score_sum": (int, float),
    "score_n": int,
    "tokens_in": int,
    "tokens_out": int,
}


def _check_carrier(carrier: Any) -> dict[str, Any] | None:
    if not isinstance(carrier, Mapping) or carrier.get("v") != CARRIER_VERSION:
        return None
    for key, types in _CARRIER_TYPES.items():
        v = carrier.get(key)
        if not isinstance(v, types) or (isinstance(v, bool) and types is not bool):
            return None
        if isinstance(v, float) and not math.isfinite(v):
            return None
    if (
        carrier["reason"] not in _REASONS
        or min(carrier["active"], carrier["steps"], carrier["score_n"], carrier["tokens_in"], carrier["tokens_out"]) < 0
    ):
        return None
    ctx = _propagator.extract({"traceparent": carrier["traceparent"]})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return dict(carrier)


def current_execution() -> Execution | _Noop:
    """The execution running in this context (a no-op object if none)."""
    return _current_execution.get() or NOOP


def current_step() -> Step | _Noop:
    """The step running in this context (a no-op object if none)."""
    return _current_step.get() or NOOP


def step(name: str | None = None, tool: str | None = None) -> Callable[[F], F]:
    """Decorator: run a function (sync or async) as a step of the current execution.

    Outside an execution the function simply runs.
    """

    def decorate(fn: F) -> F:
        step_name = name or fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = _current_execution.get()
                if run is None:
                    return await fn(*args, **kwargs)
                async with run.step(step_name, tool=tool):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = _current_execution.get()
            if run is None:
                return fn(*args, **kwargs)
            with run.step(step_name, tool=tool):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
