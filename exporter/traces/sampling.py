"""Execution-level sampling: hold an execution's spans until it ends, then export them whole or not at all.

`configure(sample_healthy=r)` with r < 1 keeps every trace whose execution failed, timed out, was
cancelled, had a failed or flagged step, a failed evaluation, ran longer than its agent's
`max_runtime_seconds`, or was suspended/resumed; of the healthy rest it keeps the fraction r, chosen
from the trace id (its low 64 bits, as OTel's TraceIdRatioBased), so every process decides the same
way for the same trace without talking to the others.

Spans are held by `SamplingSpanProcessor`, a wrapper around an export processor: the library puts
one around its own `BoundedSpanProcessor`; an application whose provider makes the library's spans
wraps its own export processor with it (a library cannot reach into an application's pipeline).
With no holder, nothing is held and every trace is kept (exemplars then link to all of them).
Memory is bounded: spans held per trace and in total have caps; a trace over a cap is exported at
once without waiting for its decision (kept, never lost) and counted as `sampling_overflow`.
A span the head sampler dropped never reaches a processor: that trace stays dropped.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from ..semconv import DropReason, ExecutionStatus, FailureCause, SamplingDecision, SamplingReason

DEFAULT_MAX_HELD_PER_TRACE = 2_000  # spans of one trace waiting for its decision (a long agent loop)
DEFAULT_MAX_HELD = 20_000  # spans waiting in total, across traces (~1-2 KB each)
DEFAULT_MAX_DROPPED = 10_000  # dropped traces remembered, so their late spans are dropped too
_LOW_64 = (1 << 64) - 1

DropCallback = Callable[[DropReason, str, int], None]

# Holders alive in this process: the library's own, and any an application made for its provider.
_holders: weakref.WeakSet[SamplingSpanProcessor] = weakref.WeakSet()
_active: Sampling | None = None  # the configured policy, which counts overflow


def ratio_bound(ratio: float) -> int:
    """The bound a trace id's low 64 bits are compared with: the same in every process."""
    return min(_LOW_64 + 1, max(0, round(ratio * (1 << 64))))


def keeps_healthy(trace_id: int, bound: int) -> bool:
    """True if a healthy execution in this trace is kept (deterministic in the trace id)."""
    return (trace_id & _LOW_64) < bound


class SamplingSpanProcessor(SpanProcessor):
    """Wraps an export processor: spans of a trace with an open execution wait for its decision.

    Spans of other traces pass straight through. Add it to a TracerProvider in place of the
    processor it wraps: `provider.add_span_processor(SamplingSpanProcessor(BatchSpanProcessor(...)))`.
    """

    def __init__(
        self,
        inner: SpanProcessor,
        *,
        max_held_per_trace: int = DEFAULT_MAX_HELD_PER_TRACE,
        max_held: int = DEFAULT_MAX_HELD,
        max_dropped: int = DEFAULT_MAX_DROPPED,
    ) -> None:
        if max_held_per_trace < 1 or max_held < 1 or max_dropped < 0:
            raise ValueError("SamplingSpanProcessor caps must be >= 1 (max_dropped >= 0)")
        self.inner = inner
        self._max_per_trace = max_held_per_trace
        self._max_held = max_held
        self._max_dropped = max_dropped
        self._lock = threading.Lock()
        self._held: dict[int, list[ReadableSpan]] = {}  # trace id -> ended spans waiting, oldest first
        self._open: dict[int, int] = {}  # trace id -> executions open in it
        self._keep: set[int] = set()  # traces an execution already asked to keep (nested executions)
        self._released: set[int] = set()  # over a cap: its spans pass through until its executions end
        self._dropped: OrderedDict[int, None] = OrderedDict()
        self._stopped = False
        self.held = 0  # spans waiting now
        self.discarded = 0  # spans not exported because their trace was dropped
        self.overflowed = 0  # spans exported early because a cap was reached
        _holders.add(self)

    # ------------------------------------------------------------------ the execution's side

    def hold(self, trace_id: int) -> None:
        """An execution of this trace started: hold the trace's spans until `release`."""
        with self._lock:
            self._open[trace_id] = self._open.get(trace_id, 0) + 1
            self._dropped.pop(trace_id, None)
            if trace_id not in self._released:
                self._held.setdefault(trace_id, [])

    def release(self, trace_id: int, keep: bool) -> None:
        """An execution of this trace ended; the last one open exports the held spans or drops them."""
        with self._lock:
            n = self._open.get(trace_id, 0) - 1
            if n > 0:
                self._open[trace_id] = n
                if keep:
                    self._keep.add(trace_id)
                return
            self._open.pop(trace_id, None)
            self._released.discard(trace_id)
            if trace_id in self._keep:
                self._keep.discard(trace_id)
                keep = True
            spans = self._held.pop(trace_id, None) or []
            self.held -= len(spans)
            if not keep:
                self.discarded += len(spans)
                if self._max_dropped:
                    self._dropped[trace_id] = None
                    if len(self._dropped) > self._max_dropped:
                        self._dropped.popitem(last=False)
                return
        self._export(spans)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, and nothing held (held spans are the parent's traces,
        the parent decides and exports them; the child must not send a duplicate)."""
        self._lock = threading.Lock()
        self._held.clear()
        self._open.clear()
        self._keep.clear()
        self._released.clear()
        self.held = 0

    # ------------------------------------------------------------------ SpanProcessor

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if (self._open or self._dropped) and self._hold_or_drop(span):  # else: straight through
            return
        self.inner.on_end(span)

    def _hold_or_drop(self, span: ReadableSpan) -> bool:
        """True if the span was held or dropped here; never raises into whoever ended the span."""
        try:
            trace_id = span.context.trace_id
            early: list[ReadableSpan] = []
            with self._lock:
                held = self._held.get(trace_id)
                if held is not None:
                    if len(held) < self._max_per_trace and self.held < self._max_held:
                        held.append(span)
                        self.held += 1
                        return True
                    early = self._overflow(trace_id)
                elif trace_id in self._dropped:
                    self.discarded += 1
                    return True
            if early:
                self._export(early)
                _report_overflow(len(early))
        except Exception:  # noqa: BLE001 - a bug here must not reach the application: export as usual
            return False
        return False

    def _overflow(self, trace_id: int) -> list[ReadableSpan]:
        """Under the lock: release this trace if it is over its cap, else the oldest held traces."""
        out: list[ReadableSpan] = []
        if len(self._held.get(trace_id, ())) >= self._max_per_trace:
            victims = [trace_id]
        else:
            victims = []
            freed = 0
            for tid, spans in self._held.items():  # insertion order: the oldest first
                victims.append(tid)
                freed += len(spans)
                if self.held - freed < self._max_held:
                    break
            if trace_id not in victims:
                victims.append(trace_id)  # the span in hand passes through with its trace
        for tid in victims:
            spans = self._held.pop(tid, [])
            self.held -= len(spans)
            out.extend(spans)
            if tid in self._open:
                self._released.add(tid)
        self.overflowed += len(out)
        return out

    def _export(self, spans: list[ReadableSpan]) -> None:
        on_end = self.inner.on_end
        for span in spans:
            on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped processor; spans still held wait for their executions to end."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is still held (its outcome is unknown: kept is the safe side), then stop."""
        if self._stopped:
            return
        self._stopped = True
        _holders.discard(self)
        with self._lock:
            spans = [s for held in self._held.values() for s in held]
            self._held.clear()
            self._open.clear()
            self.held = 0
        self._export(spans)
        self.inner.shutdown()


def _report_overflow(amount: int) -> None:
    policy = _active
    if policy is not None:
        policy.on_drop(
            DropReason.SAMPLING_OVERFLOW,
            f"{amount} held spans over a sampling cap; exported without waiting for their execution's outcome",
            amount,
        )


class Sampling:
    """The configured policy: which executions hold their spans, and the decision at their end."""

    def __init__(self, ratio: float, on_drop: DropCallback, count: Callable[[str, str], None]) -> None:
        self.ratio = ratio
        self.bound = ratio_bound(ratio)
        self.on_drop = on_drop
        self._count = count  # (decision, reason) -> counted in agent_exporter_sampling_decisions_total

    def keeps_healthy(self, trace_id: int) -> bool:
        return keeps_healthy(trace_id, self.bound)

    def decide(
        self, trace_id: int, status: str | None, cause: str | None, flagged: str | None, slow: bool, resumed: bool
    ) -> str | None:
        """Why an execution's trace is kept (a SamplingReason value), or None to drop it.

        `status` None means suspended: its part is kept, as is every resumed part, so a trace that
        crosses processes is whole (a part cannot know how a later one ends).
        """
        if status == ExecutionStatus.CANCELLED.value:
            return SamplingReason.CANCELLED.value
        if status == ExecutionStatus.FAILED.value:
            return (SamplingReason.TIMEOUT if cause == FailureCause.TIMEOUT.value else SamplingReason.FAILED).value
        if flagged is not None:
            return flagged
        if slow:
            return SamplingReason.SLOW.value
        if status is None or resumed:
            return SamplingReason.SUSPENDED.value
        return SamplingReason.SAMPLED.value if keeps_healthy(trace_id, self.bound) else None

    def hold(self, trace_id: int) -> bool:
        """Hold this trace in every live holder; False when sampling is off or there is no holder."""
        if self.ratio >= 1:
            return False
        holders = list(_holders)
        for holder in holders:
            holder.hold(trace_id)
        return bool(holders)

    def release(self, trace_id: int, reason: str | None) -> None:
        """The execution ended: kept for `reason`, or dropped when None."""
        keep = reason is not None
        for holder in list(_holders):
            try:
                holder.release(trace_id, keep)
            except Exception:  # noqa: BLE001 - the execution's metrics are recorded after this
                pass
        self.count(reason)

    def count(self, reason: str | None) -> None:
        try:
            if reason is None:
                self._count(SamplingDecision.DROPPED.value, SamplingReason.HEALTHY.value)
            elif reason == SamplingReason.HEAD_SAMPLER.value:
                self._count(SamplingDecision.DROPPED.value, reason)
            else:
                self._count(SamplingDecision.KEPT.value, reason)
        except Exception:  # noqa: BLE001 - counting must never raise
            pass


def activate(policy: Sampling | None) -> None:
    """Make `policy` the one holders report overflow to (configure(); None on reset())."""
    global _active
    _active = policy


def dropped(trace_id: int) -> bool:
    """True if a holder dropped this trace (its late spans go too): no exemplar may name it."""
    return bool(_holders) and any(trace_id in h._dropped for h in list(_holders))


def holders() -> list[SamplingSpanProcessor]:
    """The live holders (for tests and the benchmark)."""
    return list(_holders)
