"""Per-trace assembly for OTLP ingest: hold a trace's summaries until it is complete, then derive.

In the span bridge the local root ends after its children in the same process, so its end says
"complete". Over OTLP the spans of a trace come in any order, in different requests (a batch
exporter sends children as they end, the root later; a client retries). So a trace is held
until its root (the span without a parent) has arrived plus `grace` seconds for stragglers,
or for `timeout` seconds after its first span when no root comes (the root is in another
service); then `spanmap.assemble` derives its events, once.

Budgets (never unbounded memory): open traces, held spans in all, spans per trace. A span over
a budget, or arriving after its trace was assembled (remembered for `timeout` seconds, up to
`max_done` traces), is not derived and is counted by reason; forwarding is not affected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..spans.mapping import DEFAULT_TRACE_TIMEOUT, SpanSummary

DEFAULT_GRACE = 2.0  # seconds after the root arrives: spans sent in a later batch still count
DEFAULT_TIMEOUT = DEFAULT_TRACE_TIMEOUT  # seconds a trace without a root (its root is elsewhere) is held
DEFAULT_MAX_TRACES = 20_000
DEFAULT_MAX_SPANS = 200_000  # held summaries in all: ~300 bytes each, ~60 MB at most
DEFAULT_MAX_SPANS_PER_TRACE = 5_000
DEFAULT_MAX_DONE = 200_000  # assembled trace ids remembered, to recognise late spans (~100 bytes each)

# Reasons a span is not derived (label values of agent_ingest_spans_not_derived_total).
LATE = "late"  # its trace was already assembled
TRACE_OVER_BUDGET = "trace_over_budget"  # the trace holds max_spans_per_trace already
TRACES_OVER_BUDGET = "traces_over_budget"  # max_traces traces are open
SPANS_OVER_BUDGET = "spans_over_budget"  # max_spans spans are held
REASONS = (LATE, TRACE_OVER_BUDGET, TRACES_OVER_BUDGET, SPANS_OVER_BUDGET)


class _Trace:
    __slots__ = ("spans", "first", "rooted")

    def __init__(self, first: float) -> None:
        self.spans: list[SpanSummary] = []
        self.first = first
        self.rooted = False


class Assembler:
    """Thread-safe: requests `add()` from many threads, one sweeper calls `due()`."""

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        timeout: float = DEFAULT_TIMEOUT,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
        max_done: int = DEFAULT_MAX_DONE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, v in (("max_traces", max_traces), ("max_spans", max_spans),
                        ("max_spans_per_trace", max_spans_per_trace), ("max_done", max_done)):  # fmt: skip
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if not 0 <= grace <= timeout:
            raise ValueError(f"grace must be within 0..timeout, got grace={grace}, timeout={timeout}")
        self.grace, self.timeout = grace, timeout
        self.max_traces, self.max_spans, self.max_per_trace, self.max_done = (
            max_traces, max_spans, max_spans_per_trace, max_done,
        )  # fmt: skip
        self._clock = clock
        self._lock = threading.Lock()
        self._traces: dict[bytes, _Trace] = {}  # in first-seen order: the timeout scan starts at the front
        self._rooted: dict[bytes, float] = {}  # trace -> when it is due, in root-arrival order
        self._done: dict[bytes, float] = {}  # assembled trace -> when it was, oldest first
        self.held = 0  # summaries held in all

    @property
    def open_traces(self) -> int:
        return len(self._traces)

    def add(self, traces: dict[bytes, list[tuple[SpanSummary, bool]]]) -> dict[str, int]:
        """Hold the spans of one request; returns how many were not derived, by reason."""
        dropped: dict[str, int] = {}
        now = self._clock()
        with self._lock:
            for tid, spans in traces.items():
                if tid in self._done:
                    dropped[LATE] = dropped.get(LATE, 0) + len(spans)
                    continue
                t = self._traces.get(tid)
                if t is None:
                    if len(self._traces) >= self.max_traces:
                        dropped[TRACES_OVER_BUDGET] = dropped.get(TRACES_OVER_BUDGET, 0) + len(spans)
                        continue
                    t = self._traces[tid] = _Trace(now)
                room = min(self.max_per_trace - len(t.spans), self.max_spans - self.held)
                for summary, is_root in spans:
                    if room > 0:
                        t.spans.append(summary)
                        self.held += 1
                        room -= 1
                    else:
                        reason = SPANS_OVER_BUDGET if len(t.spans) < self.max_per_trace else TRACE_OVER_BUDGET
                        dropped[reason] = dropped.get(reason, 0) + 1
                    if is_root and not t.rooted:  # a root over budget still completes its trace
                        t.rooted = True
                        self._rooted[tid] = now + self.grace
                if not t.spans and not t.rooted:
                    del self._traces[tid]
        return dropped

    def due(self, everything: bool = False) -> list[tuple[bytes, list[SpanSummary]]]:
        """Take the traces that are complete (root + grace) or timed out; `everything` at shutdown."""
        now = self._clock()
        out: list[tuple[bytes, list[SpanSummary]]] = []
        with self._lock:
            ready: list[bytes] = []
            for tid, at in self._rooted.items():
                if at > now and not everything:
                    break
                ready.append(tid)
            for tid in ready:
                del self._rooted[tid]
                self._take(tid, now, out)
            expired: list[bytes] = []
            for tid, t in self._traces.items():
                if t.first + self.timeout > now and not everything:
                    break
                expired.append(tid)
            for tid in expired:
                self._rooted.pop(tid, None)
                self._take(tid, now, out)
            forget: list[bytes] = []
            for tid, at in self._done.items():
                if at + self.timeout > now and len(self._done) - len(forget) <= self.max_done:
                    break
                forget.append(tid)
            for tid in forget:
                del self._done[tid]
        return out

    def _take(self, tid: bytes, now: float, out: list[tuple[bytes, list[SpanSummary]]]) -> None:
        t = self._traces.pop(tid, None)
        if t is None:
            return
        self.held -= len(t.spans)
        self._done[tid] = now
        out.append((tid, t.spans))
