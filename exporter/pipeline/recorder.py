"""The fan-out: every event to the metrics, the log events and the task store, each isolated.

This is the only code that knows metric names. Whatever produced an event (the native API,
the span bridge), its labels pass the same cardinality guard here and only here, and its log
event has the same fields. Each consumer gets every event: a failure in one is counted
(`internal_error`) and never hides the event from the others, nor reaches the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import DEBUG, INFO, WARNING
from typing import Any

from .. import semconv as sc
from ..semconv import DropReason, TokenType
from .events import (
    BranchTaken,
    EvaluationRecorded,
    Event,
    EventSink,
    ExecutionContent,
    ExecutionFinished,
    ExecutionRef,
    ExecutionResumed,
    ExecutionRunning,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    LlmCallFinished,
    StepFinished,
    StepStarted,
    TokensUsed,
    ToolCallFinished,
)
from .metrics import Metrics

_FAILED = sc.ExecutionStatus.FAILED.value
_INPUT, _OUTPUT = TokenType.INPUT.value, TokenType.OUTPUT.value
_CACHE_READ, _CACHE_WRITE = sc.LlmTokenType.CACHE_READ.value, sc.LlmTokenType.CACHE_WRITE.value
_REASONING = sc.LlmTokenType.REASONING.value
_UNKNOWN = sc.UNKNOWN_LABEL_VALUE
_MAX_USAGE_KEYS = 4096  # usage label combinations remembered (a stream of new ones is not)


class _Usage:
    """One usage key's labels, resolved through the guard once, and its series, each made on its first
    use (a series made before it is used would show a zero that was never measured)."""

    __slots__ = ("labels", "series")

    def __init__(self, labels: tuple[str, str, str, str, str]) -> None:
        self.labels = labels  # agent, step, version, provider, model
        self.series: list[Any] = [None] * len(_USAGE_SERIES)

    def make(self, m: Metrics, i: int) -> Any:
        spec, pick, extra = _USAGE_SERIES[i]
        child = value_holder(m.child(spec, *(self.labels[j] for j in pick), *extra))
        self.series[i] = child
        return child


def value_holder(counter: Any) -> Any:
    """A labelled counter's value holder (`_value`, whose `inc` is what `Counter.inc` ends in), else the
    counter itself. `Counter.inc` re-checks on every call what these children always are (labelled,
    the amount a cleaned count >= 0): on the per-step usage path that is most of its cost. A
    prometheus_client without the holder gets the public method; tests/test_cost.py checks which."""
    value = getattr(counter, "_value", None)
    return value if callable(getattr(value, "inc", None)) else counter


# The series a usage event updates: (family, which of the five labels, the fixed label after them).
_A, _S, _V, _P, _M = range(5)
_USAGE_SERIES: tuple[tuple[sc.MetricSpec, tuple[int, ...], tuple[str, ...]], ...] = (
    (sc.TOKENS, (_A, _S), (_INPUT,)),
    (sc.TOKENS, (_A, _S), (_OUTPUT,)),
    (sc.VERSION_TOKENS, (_A, _V), (_INPUT,)),
    (sc.VERSION_TOKENS, (_A, _V), (_OUTPUT,)),
    (sc.LLM_TOKENS, (_A, _P, _M), (_INPUT,)),
    (sc.LLM_TOKENS, (_A, _P, _M), (_OUTPUT,)),
    (sc.LLM_TOKENS, (_A, _P, _M), (_CACHE_READ,)),
    (sc.LLM_TOKENS, (_A, _P, _M), (_CACHE_WRITE,)),
    (sc.LLM_TOKENS, (_A, _P, _M), (_REASONING,)),
    (sc.COST, (_A, _P, _M), ()),
    (sc.VERSION_COST, (_A, _V), ()),
    (sc.LLM_UNPRICED_TOKENS, (_A, _P, _M), ()),
)


class Recorder:
    """Turns events into metrics (through the cardinality guard) and log events (by level)."""

    def __init__(self, metrics: Metrics, log: Any, log_level: int) -> None:
        self.metrics = metrics
        self.exemplars = metrics.exemplars  # False in multiprocess mode, where they are dropped
        self.log = log
        self.log_level = log_level
        # A third consumer (the task store) that sees every event after the metrics; None: off.
        self.tasks: EventSink | None = None
        self._usage: dict[tuple[Any, ...], _Usage] = {}  # see _usage_of
        # Listeners that see every event last (a re-run collecting its results); each isolated.
        self.listeners: tuple[EventSink, ...] = ()
        self._metrics: dict[type, Callable[[Any], None]] = {
            ExecutionStarted: self._started,
            ExecutionRunning: self._running,
            ExecutionWaiting: self._waiting,
            ExecutionResumed: self._resumed,
            ExecutionSuspended: self._suspended,
            ExecutionFinished: self._finished,
            StepStarted: self._ignore,
            StepFinished: self._step,
            ToolCallFinished: self._tool_call,
            EvaluationRecorded: self._evaluation,
            TokensUsed: self._tokens,
            BranchTaken: self._branch,
            LlmCallFinished: self._llm_call,
            ExecutionContent: self._ignore,
        }
        # Log events, only for the types that log at the configured level (no call otherwise).
        logs: dict[type, tuple[int, Callable[[Any], None]]] = {
            ExecutionStarted: (DEBUG, self._log_started),
            ExecutionResumed: (INFO, self._log_resumed),
            ExecutionSuspended: (INFO, self._log_suspended),
            ExecutionFinished: (INFO, self._log_finished),  # failures at WARNING
            StepFinished: (DEBUG, self._log_step),
            BranchTaken: (DEBUG, self._log_branch),
        }
        self._logs = {t: fn for t, (level, fn) in logs.items() if level >= log_level or t is ExecutionFinished}

    # ------------------------------------------------------------------ the interface

    def record(self, event: Event) -> None:
        """Count, log and store one event, each on its own; never raises."""
        kind = type(event)
        try:
            self._metrics[kind](event)
        except Exception as exc:  # noqa: BLE001 - a bug here must not reach the agent
            self._failed("metrics", event, exc)
        if kind in self._logs:  # an operator, not a call: most events do not log
            try:
                self._logs[kind](event)
            except Exception as exc:  # noqa: BLE001
                self._failed("log events", event, exc)
        tasks = self.tasks
        if tasks is not None:
            try:
                tasks.record(event)
            except Exception as exc:  # noqa: BLE001
                self._failed("task store", event, exc)
        for listener in self.listeners:
            try:
                listener.record(event)
            except Exception as exc:  # noqa: BLE001
                self._failed("listener", event, exc)

    @property
    def listened(self) -> bool:
        """True when events only a store or a listener uses are worth making."""
        return self.tasks is not None or bool(self.listeners)

    def _failed(self, consumer: str, event: Event, exc: Exception) -> None:
        try:
            what = f"internal error in {consumer} recording {type(event).__name__}: {exc!r}"
            self.drop(DropReason.INTERNAL_ERROR, what)
        except Exception:  # noqa: BLE001 - counting must not raise either
            pass

    def name(self, value: Any, kind: str) -> str:
        """A name as spans and logs show it: cleaned (masked, valid UTF-8, bounded), not capped."""
        return self.metrics.name(value, kind)

    def drop(self, reason: DropReason, message: str, amount: float = 1.0) -> None:
        """Count something corrected or dropped, and warn (rate-limited) saying what."""
        self.metrics.drop(reason, message, amount)

    def logs(self, level: int) -> bool:
        return level >= self.log_level

    # ------------------------------------------------------------------ labels

    def _agent(self, ref: ExecutionRef) -> str:
        return self.metrics.agent_label(ref.agent)

    def _version(self, agent: str, ref: ExecutionRef) -> str:
        """The version label: capped per agent like step names; `unknown` when none was given, so
        the per-version series add up to the agent's totals."""
        return self.metrics.label(agent, "version", ref.version or sc.UNKNOWN_LABEL_VALUE)

    def _log(self, level: int, event: str, ref: ExecutionRef, **kw: Any) -> None:
        fields = {
            "trace_id": ref.trace_id,
            "span_id": ref.span_id,
            "task_id": ref.task_id,
            "agent": ref.agent,
            "trigger": ref.trigger,
        }
        if ref.version is not None:
            fields["version"] = ref.version
        fields.update(kw)  # a step's event carries the step's span_id
        if level == DEBUG:
            self.log.debug(event, **fields)
        elif level == INFO:
            self.log.info(event, **fields)
        else:
            self.log.warning(event, **fields)

    # ------------------------------------------------------------------ executions

    def _ignore(self, e: Event) -> None:
        """An event only the task store uses."""

    def _started(self, e: ExecutionStarted) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        m.child(sc.EXECUTIONS_STARTED, agent, m.label(agent, "trigger", ref.trigger)).inc()
        m.child(sc.AGENT_INFO, agent, self._version(agent, ref)).set(1)

    def _log_started(self, e: ExecutionStarted) -> None:
        self._log(DEBUG, sc.LOG_EXECUTION_STARTED, e.ref)

    def _running(self, e: ExecutionRunning) -> None:
        child = self.metrics.child(sc.EXECUTIONS_IN_PROGRESS, self._agent(e.ref))
        if e.running:
            child.inc()
        else:
            child.dec()

    def _waiting(self, e: ExecutionWaiting) -> None:
        self.metrics.pending_add(self._agent(e.ref), e.reason, e.key, e.since)

    def _resumed(self, e: ExecutionResumed) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        if e.key is not None:
            m.pending_remove(agent, e.reason, e.key)
        if e.waited is not None:
            m.child(sc.EXECUTION_PENDING_DURATION, agent, e.reason).observe(e.waited, ref.exemplar)
        if e.key is None:  # a carrier resumed: this process's part begins, and runs that version
            m.child(sc.AGENT_INFO, agent, self._version(agent, ref)).set(1)

    def _log_resumed(self, e: ExecutionResumed) -> None:
        if e.key is None:  # a carrier resumed (an in-process wait ending is not logged)
            waited = None if e.waited is None else round(e.waited, 3)
            self._log(INFO, sc.LOG_EXECUTION_RESUMED, e.ref, reason=e.reason, pending_seconds=waited)

    def _suspended(self, e: ExecutionSuspended) -> None:
        """Only logged (the waiting gauges count it through ExecutionWaiting / the store)."""

    def _log_suspended(self, e: ExecutionSuspended) -> None:
        self._log(INFO, sc.LOG_EXECUTION_SUSPENDED, e.ref, reason=e.reason)

    def _finished(self, e: ExecutionFinished) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        trigger = m.label(agent, "trigger", ref.trigger)
        ex = ref.exemplar
        m.child(sc.EXECUTIONS_FINISHED, agent, trigger, e.status).inc()
        m.child(sc.EXECUTION_DURATION, agent, trigger, e.status).observe(e.runtime, ex)
        version = self._version(agent, ref)
        m.child(sc.VERSION_EXECUTIONS_FINISHED, agent, version, e.status).inc()
        m.child(sc.VERSION_EXECUTION_DURATION, agent, version).observe(e.runtime, ex)
        if e.score is not None:
            m.child(sc.EXECUTION_EVALUATION_SCORE, agent, trigger).observe(e.score, ex)
            m.child(sc.VERSION_EXECUTION_EVALUATION_SCORE, agent, version).observe(e.score, ex)
        if e.status == _FAILED:
            m.child(sc.EXECUTION_FAILURES, agent, trigger, e.cause or sc.FailureCause.ERROR.value).inc(exemplar=ex)
        if e.cost is not None:
            m.child(sc.EXECUTION_COST, agent, trigger).observe(e.cost, ex)

    def _log_finished(self, e: ExecutionFinished) -> None:
        if e.status == _FAILED:
            if self.log_level <= WARNING:
                self._log(
                    WARNING,
                    sc.LOG_EXECUTION_FAILED,
                    e.ref,
                    status=e.status,
                    cause=e.cause or sc.FailureCause.ERROR.value,
                    error=e.error,
                    duration_seconds=round(e.runtime, 6),
                )
        elif self.log_level <= INFO:
            self._log(INFO, sc.LOG_EXECUTION_FINISHED, e.ref, status=e.status, duration_seconds=round(e.runtime, 6))

    # ------------------------------------------------------------------ inside an execution

    def _step(self, e: StepFinished) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        step = m.label(agent, "step", e.step)
        m.child(sc.STEPS, agent, step, e.status).inc()
        m.child(sc.STEP_DURATION, agent, step).observe(e.duration, ref.exemplar)

    def _log_step(self, e: StepFinished) -> None:
        self._log(
            DEBUG,
            sc.LOG_STEP_FINISHED,
            e.ref,
            step=e.step,
            step_index=e.step_index,
            status=e.status,
            duration_seconds=round(e.duration, 6),
            span_id=e.span_id,
        )

    def _tool_call(self, e: ToolCallFinished) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        tool = m.label(agent, "tool", e.tool)
        m.child(sc.TOOL_CALLS, agent, tool, e.outcome).inc()
        m.child(sc.VERSION_TOOL_CALLS, agent, self._version(agent, ref), e.outcome).inc()
        m.child(sc.TOOL_CALL_DURATION, agent, tool).observe(e.duration, ref.exemplar)

    def _evaluation(self, e: EvaluationRecorded) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        step = m.label(agent, "step", e.step)
        if e.result is not None:
            m.child(sc.EVALUATIONS, agent, step, m.label(agent, "evaluation", e.name), e.result).inc()
        if e.score is not None:
            m.child(sc.STEP_EVALUATION_SCORE, agent, step).observe(e.score, ref.exemplar)

    def _tokens(self, e: TokensUsed) -> None:
        ref = e.ref
        u = self._usage.get((ref.agent, ref.version, e.step, e.provider, e.model))
        if u is None:
            u = self._usage_of(e)
        s, m = u.series, self.metrics
        if e.input:
            n = e.input
            (s[0] or u.make(m, 0)).inc(n)
            (s[2] or u.make(m, 2)).inc(n)
            (s[4] or u.make(m, 4)).inc(n)
        if e.output:
            n = e.output
            (s[1] or u.make(m, 1)).inc(n)
            (s[3] or u.make(m, 3)).inc(n)
            (s[5] or u.make(m, 5)).inc(n)
        if e.cache_read:
            (s[6] or u.make(m, 6)).inc(e.cache_read)
        if e.cache_write:
            (s[7] or u.make(m, 7)).inc(e.cache_write)
        if e.reasoning:
            (s[8] or u.make(m, 8)).inc(e.reasoning)
        if e.cost is not None:
            (s[9] or u.make(m, 9)).inc(e.cost)
            (s[10] or u.make(m, 10)).inc(e.cost)
        elif e.unpriced:
            (s[11] or u.make(m, 11)).inc(e.input + e.output)

    def _usage_of(self, e: TokensUsed) -> _Usage:
        """A usage event's labels through the cardinality guard, once per (agent, version, step,
        provider, model) — remembered only when every one was admitted, so that each use of a
        value over a cap is still counted as `label_overflow`."""
        m = self.metrics
        agent = self._agent(e.ref)
        labels = (
            agent,
            m.label(agent, "step", e.step),
            self._version(agent, e.ref),
            m.label(agent, "provider", e.provider or _UNKNOWN),
            m.label(agent, "model", e.model or _UNKNOWN),
        )
        u = _Usage(labels)
        if sc.OTHER_LABEL_VALUE not in labels:
            if len(self._usage) >= _MAX_USAGE_KEYS:
                self._usage.clear()
            self._usage[(e.ref.agent, e.ref.version, e.step, e.provider, e.model)] = u
        return u

    def _llm_call(self, e: LlmCallFinished) -> None:
        m, ref = self.metrics, e.ref
        agent = self._agent(ref)
        provider = m.label(agent, "provider", e.provider or _UNKNOWN)
        model = m.label(agent, "model", e.model or _UNKNOWN)
        m.child(sc.LLM_CALLS, agent, provider, model, e.outcome).inc()
        m.child(sc.LLM_CALL_DURATION, agent, provider, model).observe(e.duration, ref.exemplar)

    def _branch(self, e: BranchTaken) -> None:
        m = self.metrics
        agent = self._agent(e.ref)
        step = m.label(agent, "step", e.step)
        m.child(sc.BRANCH_DECISIONS, agent, step, m.label(agent, "path", e.path)).inc()

    def _log_branch(self, e: BranchTaken) -> None:
        self._log(
            DEBUG,
            sc.LOG_BRANCH_DECISION,
            e.ref,
            step=e.step,
            selected=e.path,
            not_selected=list(e.not_selected),
            span_id=e.span_id,
        )
