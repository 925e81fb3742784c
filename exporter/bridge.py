"""The span bridge: other instrumentations' spans in this process become the library's events.

`configure(span_metrics=True)` adds a `SpanBridge` to the TracerProvider the frameworks use.
It holds a trace's summaries only while the trace's local root is open (the span whose parent
is not open in this process): children end before their parents, so when the local root ends
the subtree is complete and `spanmap.assemble` turns it into events. Framework spans started
inside `exporter.execution()` (read from the context at start) fill that execution instead of
counting a new one; `exporter.task(trigger=, task_id=)` names a framework execution's trigger
and task id. Memory is bounded: open spans, open traces and spans per trace have budgets, and
what is over them is dropped and counted (`trace_over_budget`), never raised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from .events import EventSink
from .metrics import exemplar_of
from .recording import current_execution_var, current_step_var
from .sampling import dropped
from .semconv import DropReason
from .spanmap import OWN_SCOPE, Native, SpanSummary, assemble, summarize
from .tracing import TracingSetup

DEFAULT_MAX_OPEN_SPANS = 100_000  # spans started and not ended, across all traces
DEFAULT_MAX_TRACES = 10_000  # traces with framework spans waiting for their local root
DEFAULT_MAX_SPANS_PER_TRACE = 5_000  # summaries kept per trace (a long agent loop)

_task: ContextVar[tuple[str | None, str | None] | None] = ContextVar("agent_exporter_task", default=None)


@contextmanager
def task(trigger: str | None = None, task_id: str | None = None) -> Iterator[None]:
    """Name the trigger and task id of the framework executions started inside this block.

    For agents built on a framework (with `configure(span_metrics=True)`): without it a
    framework execution's trigger is `unknown` (or its root span's `task.trigger` attribute).
    """
    token = _task.set((None if trigger is None else str(trigger), None if task_id is None else str(task_id)))
    try:
        yield
    finally:
        _task.reset(token)


class _Trace:
    __slots__ = ("spans", "natives", "task")

    def __init__(self) -> None:
        self.spans: list[SpanSummary] = []
        self.natives: dict[int, Native] = {}
        self.task: dict[int, tuple[str | None, str | None]] = {}


class SpanBridge(SpanProcessor):
    """A SpanProcessor that reads ended spans and records events; it exports nothing."""

    def __init__(
        self,
        sink: EventSink,
        drop: Any,
        *,
        exemplars: bool = True,
        version: str | None = None,
        max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
    ) -> None:
        self._sink = sink
        self._drop = drop
        self._exemplars = exemplars
        self._version = version  # configure(agent_version=): for framework runs whose spans name none
        self._max_open = max_open_spans
        self._max_traces = max_traces
        self._max_spans = max_spans_per_trace
        self._open: dict[int, int | None] = {}  # span id -> parent span id, while open
        self._started: dict[int, tuple[Native | None, tuple[str | None, str | None] | None]] = {}
        self._traces: dict[int, _Trace] = {}
        self._stopped = False

    # ------------------------------------------------------------------ SpanProcessor

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if self._stopped:
            return
        try:
            sid = span.context.span_id
            parent = span.parent
            native = None
            given = None
            if span.instrumentation_scope is None or span.instrumentation_scope.name != OWN_SCOPE:
                run = current_execution_var.get()
                if run is not None and not run.ended:
                    step = current_step_var.get()
                    native = Native(run.ref, step.name if step is not None and step.run is run else None)
                else:
                    given = _task.get()
            # Single dict operations are atomic: no lock on the hot path (the budget is approximate
            # by at most one span per thread).
            if len(self._open) >= self._max_open:
                self._drop(DropReason.TRACE_OVER_BUDGET, f"more than {self._max_open} open spans; span not followed")
                return
            self._open[sid] = parent.span_id if parent is not None else None
            if native is not None or given is not None:
                self._started[sid] = (native, given)
        except Exception as exc:  # noqa: BLE001 - another instrumentation's span must not break the app
            self._drop(DropReason.BAD_SPAN, f"span bridge could not read a started span: {exc!r}")

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped:
            return
        try:
            self._end(span)
        except Exception as exc:  # noqa: BLE001
            self._drop(DropReason.BAD_SPAN, f"span bridge could not read an ended span: {exc!r}")

    def shutdown(self) -> None:
        """Stop reading spans (an SDK provider cannot remove a processor: this one goes quiet)."""
        self._stopped = True
        self._open.clear()
        self._started.clear()
        self._traces.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # ------------------------------------------------------------------ internals

    def _end(self, span: ReadableSpan) -> None:
        ctx = span.context
        sid, tid = ctx.span_id, ctx.trace_id
        scope = _scope(span)
        own = scope == OWN_SCOPE
        # Each dict operation below is atomic; a child ending after its local root (another
        # thread, late) finds no parent open and is assembled on its own: nothing is left behind.
        parent_id = self._open.pop(sid, None)
        info = self._started.pop(sid, None) if self._started else None
        local_root = parent_id is None or parent_id not in self._open
        trace = self._traces.get(tid)
        if trace is None:
            if own:
                return  # no framework span in this trace: nothing to map
            if len(self._traces) < self._max_traces:
                trace = self._traces.setdefault(tid, _Trace())
        if trace is not None and local_root:
            self._traces.pop(tid, None)
        if trace is None:
            self._drop(DropReason.TRACE_OVER_BUDGET, f"more than {self._max_traces} open traces with framework spans")
            return
        if len(trace.spans) >= self._max_spans:
            self._drop(DropReason.TRACE_OVER_BUDGET, f"a trace has more than {self._max_spans} spans; span ignored")
        else:
            trace.spans.append(_summary(span, parent_id, scope))
        if info is not None:
            if info[0] is not None:
                trace.natives[sid] = info[0]
            if info[1] is not None:
                trace.task[sid] = info[1]
        if local_root:
            self._assemble(trace, tid, ctx.trace_flags.sampled)

    def _assemble(self, trace: _Trace, trace_id: int, sampled: bool) -> None:
        hex_id = format(trace_id, "032x")
        # An exemplar names only a trace that is exported: sampled by the head sampler, not dropped
        # by execution-level sampling (a late framework run in a trace whose execution was dropped).
        exemplar = exemplar_of(hex_id) if self._exemplars and sampled and not dropped(trace_id) else None
        events = assemble(
            trace.spans,
            trace_id=hex_id,
            exemplar=exemplar,
            natives=trace.natives,
            task=trace.task,
            version=self._version,
        )
        record = self._sink.record
        for event in events:
            record(event)


def install(
    setup: TracingSetup, sink: EventSink, drop: Any, *, exemplars: bool, version: str | None = None
) -> SpanBridge:
    """Add a bridge to the providers that make framework spans: the one the library's spans come
    from, the application's global one (now, or when the library first sees it set)."""
    bridge = SpanBridge(sink, drop, exemplars=exemplars, version=version)
    added: list[Any] = []

    def add(provider: Any) -> None:
        if isinstance(provider, TracerProvider) and all(p is not provider for p in added):
            provider.add_span_processor(bridge)
            added.append(provider)

    add(setup.provider)
    add(trace.get_tracer_provider())
    setup.on_app_provider = add
    return bridge


def _scope(span: Any) -> str | None:
    scope = getattr(span, "instrumentation_scope", None)
    return scope.name if scope is not None else None


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict when the SDK keeps one (BoundedAttributes._dict).

    The public `span.attributes` is a proxy over an ABC Mapping whose `.get` raises and catches
    KeyError for every missing key: most of the mapping's look-ups miss, and that tripled its
    cost. tests/test_bridge.py checks the private path still matches the public one.
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return span.attributes or {}


def _summary(span: ReadableSpan, parent_id: int | None, scope: str | None) -> SpanSummary:
    attrs = _attributes(span)
    status = span.status
    events = [(e.name, e.attributes or {}) for e in span.events] if span.events else []
    return summarize(
        span.context.span_id,
        parent_id if parent_id is not None else (span.parent.span_id if span.parent is not None else None),
        span.name,
        attrs,
        scope,
        not status.is_ok and not status.is_unset,
        status.description,
        events,
        span.start_time or 0,
        span.end_time or 0,
    )
