"""The span bridge: other instrumentations' spans in this process become the library's events.

`configure(span_metrics=True)` adds a `SpanBridge` to the TracerProvider the frameworks use: the
one the library's spans come from, the application's global one at install, and (through
`tick()`, which the library's housekeeping thread calls about every 0.25 s) a global SDK provider
set after `configure()`. When a few seconds pass with none a framework could use (the global one
still the API's no-op, no `tracer_provider=`) and no framework span seen, it warns once, naming
the fix.

It holds a trace's summaries only while the trace's local root is open (the span whose parent
is not open in this process): children end before their parents, so when the local root ends
the subtree is complete and `spanmap.assemble` turns it into events. Framework spans started
inside `exporter.execution()` (read from the context at start) fill that execution instead of
counting a new one; `exporter.task(trigger=, task_id=)` names a framework execution's trigger
and task id. One lock guards the span tables (one uncontended acquire per span start and end);
a trace is handed to assembly under it, so no span is appended to a trace already assembled.

Memory is bounded: open spans, open traces and spans per trace have budgets, and what is over
them is dropped and counted (`trace_over_budget`), never raised. A trace no span of which has
started or ended for `trace_timeout` seconds (default `spanmap.DEFAULT_TRACE_TIMEOUT`, 300 s, the
OTLP ingest's too) while its local root is still open (smolagents' instrumentor never ends the
root of a run that raised) is expired: its held spans and open entries are released and counted
(`trace_expired`). They are dropped, not assembled: the ingest assembles a rootless trace at its
timeout because its root is usually in another service, so the trace is as complete as it gets;
here the root is known to be open in this process, the subtree is known to be incomplete, and its
top spans (smolagents' `Step N` chains) would be counted as executions under wrong names. A span
ending after its trace was assembled (its parent, open here when it started, ended first) or
after its open entry expired is counted (`late_span`), not assembled as a trace of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from ..instrument.recording import current_execution_var, current_step_var
from ..pipeline.events import EventSink
from ..pipeline.logs import RateLimitedWarnings
from ..pipeline.metrics import exemplar_of
from ..pricing import Prices
from ..semconv import DropReason
from ..traces.export import TracingSetup, _global_provider
from ..traces.sampling import dropped
from . import hooks
from .mapping import DEFAULT_TRACE_TIMEOUT, OWN_SCOPE, Native, SpanSummary, assemble, summarize
from .waits import Hold, Waits, hold_var

DEFAULT_MAX_OPEN_SPANS = 100_000  # spans started and not ended, across all traces
DEFAULT_MAX_TRACES = 10_000  # traces with framework spans waiting for their local root
DEFAULT_MAX_SPANS_PER_TRACE = 5_000  # summaries kept per trace (a long agent loop)
DEFAULT_MAX_GONE = 100_000  # expired open span ids remembered (for `trace_timeout`) to count them late
DEFAULT_PROVIDER_GRACE = 5.0  # seconds after install before warning that no SDK provider is there
TICK_INTERVAL = 0.25  # seconds between `tick()` calls the runtime is expected to make

_task: ContextVar[tuple[str | None, str | None] | None] = ContextVar("agent_exporter_task", default=None)
Warn = Callable[[str, str], object]  # RateLimitedWarnings.warn(key, message)

_FIX = (
    "configure(set_global_tracer_provider=True); or opentelemetry.trace.set_tracer_provider(TracerProvider()) "
    "before or after configure(); or, when your framework is given a provider of its own (e.g. Pydantic AI "
    "Agent.instrument_all(InstrumentationSettings(tracer_provider=tp))), configure(tracer_provider=tp)"
)


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
    __slots__ = ("spans", "natives", "task", "holds", "last", "seen")

    def __init__(self, now: float) -> None:
        self.spans: list[SpanSummary] = []
        self.natives: dict[int, Native] = {}
        self.task: dict[int, tuple[str | None, str | None]] = {}
        self.holds: dict[str, Hold] = {}  # span id (hex) -> the framework hook's hold it started under
        self.last = now  # when a span of it last started or ended (the idle timeout's clock)
        self.seen = now  # its place in the expiry scan: `_traces` is ordered by it


# An open span: (parent span id, trace id, when it started or was last found alive, whether its
# parent was open here when it started, whether it is one of the library's own spans).
_Open = tuple[int | None, int, float, bool, bool]


class SpanBridge(SpanProcessor):
    """A SpanProcessor that reads ended spans and records events; it exports nothing."""

    def __init__(
        self,
        sink: EventSink,
        drop: Any,
        *,
        exemplars: bool = True,
        version: str | None = None,
        prices: Prices | None = None,
        max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
        trace_timeout: float = DEFAULT_TRACE_TIMEOUT,
        provider_grace: float = DEFAULT_PROVIDER_GRACE,
        own_provider: Any = None,
        warn: Warn | None = None,
        clock: Callable[[], float] = time.monotonic,
        tasks: Any = None,
    ) -> None:
        if not trace_timeout > 0:
            raise ValueError(f"trace_timeout must be > 0 seconds, got {trace_timeout!r}")
        if not provider_grace >= 0:
            raise ValueError(f"provider_grace must be >= 0 seconds, got {provider_grace!r}")
        self._sink = sink
        self._drop = drop
        self._warn = warn if warn is not None else _warner(drop)
        self._exemplars = exemplars
        self._version = version  # configure(agent_version=): for framework runs whose spans name none
        self._prices = prices  # model prices (None: cost off)
        self._max_open = max_open_spans
        self._max_traces = max_traces
        self._max_spans = max_spans_per_trace
        self._timeout = trace_timeout
        self._grace = provider_grace
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}  # span id -> _Open, while open; in `stamp` order
        self._started: dict[int, tuple[Native | None, tuple[str | None, str | None] | None, Hold | None]] = {}
        # Framework runs that stop for a human: parked and resumed by agent and task id.
        self.waits = Waits(sink, drop, tasks=tasks)
        self._hooks: list[Callable[[], None]] = []  # undo the framework hooks installed
        self._hooks_wanted = True  # tick() installs a framework's hook once its module is imported
        self._traces: dict[int, _Trace] = {}  # in `seen` order
        self._gone: dict[int, float] = {}  # framework span ids whose open entry expired -> when
        self._now = clock()  # coarse time, moved on by tick(): the hot path reads no clock
        self._since = self._now  # installed at
        self._providers: list[Any] = []  # SDK providers the bridge is in
        self._own = own_provider  # the library's private provider: frameworks do not use it
        self._global: Any = None  # the global provider tick() last looked at
        self._checked = False  # the no-provider check ran (it warns at most once)
        self._framework_seen = False  # a span not of the library's own reached the bridge
        self._stopped = False

    # ------------------------------------------------------------------ SpanProcessor

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if self._stopped:
            return
        try:
            sid = span.context.span_id
            tid = span.context.trace_id
            parent = span.parent
            pid = parent.span_id if parent is not None else None
            native = None
            given = None
            hold = None
            own = span.instrumentation_scope is not None and span.instrumentation_scope.name == OWN_SCOPE
            if not own:
                run = current_execution_var.get()
                if run is not None and not run.ended:
                    step = current_step_var.get()
                    native = Native(run.ref, step.name if step is not None and step.run is run else None)
                else:
                    given = _task.get()
                    hold = hold_var.get()
            with self._lock:
                full = len(self._open) >= self._max_open
                if not full:
                    now = self._now
                    self._open[sid] = (pid, tid, now, pid is not None and pid in self._open, own)
                    if native is not None or given is not None or hold is not None:
                        self._started[sid] = (native, given, hold)
                    held = self._traces.get(tid)
                    if held is not None:
                        held.last = now
                    elif not own and len(self._traces) < self._max_traces:
                        self._traces[tid] = _Trace(now)
                    if not own:
                        self._framework_seen = True
            if full:
                self._drop(DropReason.TRACE_OVER_BUDGET, f"more than {self._max_open} open spans; span not followed")
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
        self._hooks_wanted = False
        hooks, self._hooks = self._hooks, []
        for undo in hooks:
            try:
                undo()
            except Exception:  # noqa: BLE001 - shutting down: nothing to report to
                pass
        with self._lock:
            self._open.clear()
            self._started.clear()
            self._traces.clear()
            self._gone.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # ------------------------------------------------------------------ housekeeping

    def tick(self, now: float | None = None) -> None:
        """Housekeeping, every `TICK_INTERVAL` seconds from the library's runtime thread.

        Adds the bridge to a global SDK provider set since; once, `provider_grace` seconds after
        install, warns if no provider a framework would use has it; expires idle traces. Never raises.
        """
        if self._stopped:
            return
        try:
            now = self._clock() if now is None else now
            self._now = now
            provider = _global_provider()
            if provider is not self._global:
                self._global = provider
                self.attach(provider)
            if not self._checked and now - self._since >= self._grace:
                self._checked = True
                self._check_provider(provider)
            self._expire(now)
            if self._hooks_wanted:
                self.install_hooks()
            self.waits.tick()
        except Exception as exc:  # noqa: BLE001 - housekeeping must not kill the runtime's thread
            self._drop(DropReason.INTERNAL_ERROR, f"span bridge housekeeping failed: {exc!r}")

    def attach(self, provider: Any) -> None:
        """Add the bridge to `provider` if it is an SDK TracerProvider it is not in yet."""
        if not isinstance(provider, TracerProvider):
            return
        with self._lock:
            if any(p is provider for p in self._providers):
                return
            self._providers.append(provider)
        provider.add_span_processor(self)

    def _check_provider(self, provider: Any) -> None:
        """Warn (once) when no framework span can reach the bridge."""
        if self._framework_seen or any(p is not self._own or p is provider for p in self._providers):
            return
        if provider is None or isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            what = "no OpenTelemetry SDK TracerProvider is set (the global one is still the API's no-op)"
        else:
            what = f"the global TracerProvider is a {type(provider).__name__}, not the SDK's TracerProvider"
        self._warn(
            "span_metrics",
            f"configure(span_metrics=True): {what}, so framework spans do not reach the span bridge and no "
            f"framework execution is counted. Fix: {_FIX}",
        )

    def _expire(self, now: float) -> None:
        """Release traces idle for the timeout, and open spans of traces no longer held."""
        cutoff = now - self._timeout
        held = spans = 0
        with self._lock:
            stale: list[int] = []
            alive: list[int] = []
            for tid, t in self._traces.items():
                if t.seen > cutoff:
                    break
                (alive if t.last > cutoff else stale).append(tid)
            for tid in alive:  # old but busy (a long run): to the back of the scan
                t = self._traces.pop(tid)
                t.seen = now
                self._traces[tid] = t
            for tid in stale:
                held += len(self._traces.pop(tid).spans)
            old: list[int] = []
            for sid, entry in self._open.items():
                if entry[2] > cutoff:
                    break
                old.append(sid)
            for sid in old:
                entry = self._open.pop(sid)
                busy = self._traces.get(entry[1])
                if busy is not None and busy.last > cutoff:
                    self._open[sid] = (entry[0], entry[1], now, entry[3], entry[4])  # alive: to the back
                    continue
                self._started.pop(sid, None)
                if not entry[4]:  # the library's own spans derive nothing: nothing to count
                    spans += 1
                    self._gone[sid] = now
            forget: list[int] = []
            for sid, at in self._gone.items():
                if at > cutoff and len(self._gone) - len(forget) <= DEFAULT_MAX_GONE:
                    break
                forget.append(sid)
            for sid in forget:
                del self._gone[sid]
        if held or spans:
            self._drop(
                DropReason.TRACE_EXPIRED,
                f"{len(stale)} traces idle for {self._timeout:g} s with their local root still open "
                f"(an instrumentation that never ends its root span?): {held} ended spans and {spans} open "
                f"spans released, not derived",
                held + spans,
            )

    # ------------------------------------------------------------------ internals

    def _end(self, span: ReadableSpan) -> None:
        ctx = span.context
        sid, tid = ctx.span_id, ctx.trace_id
        scope = _scope(span)
        own = scope == OWN_SCOPE
        # Read outside the lock (most of the cost); an own span only when its trace holds framework spans.
        summary = _summary(span, scope) if not own or tid in self._traces else None
        late = over = full = False
        ready = None
        with self._lock:
            entry = self._open.pop(sid, None)
            info = self._started.pop(sid, None) if self._started else None
            trace = self._traces.get(tid)
            if entry is None:  # not followed from its start (over budget, before the bridge was added), or expired
                late = self._gone.pop(sid, None) is not None
                parent = span.parent
                pid = parent.span_id if parent is not None else None
                local_root = not late and (pid is None or pid not in self._open)
            else:
                pid = entry[0]
                parent_open = pid is not None and pid in self._open
                local_root = not parent_open and not entry[3]
                # Its parent was open here when it started and has ended first (another thread's
                # span, or a task left running): it belongs to that parent's trace, if still held.
                late = not parent_open and entry[3] and trace is None
            if late or (trace is None and own):
                pass  # late: counted below (an own span derives nothing on its own)
            else:
                if trace is None:
                    if len(self._traces) < self._max_traces:
                        trace = self._traces[tid] = _Trace(self._now)
                    else:
                        full = True
                if trace is not None:
                    if len(trace.spans) >= self._max_spans:
                        over = True
                    else:
                        trace.spans.append(summary if summary is not None else _summary(span, scope))
                    if info is not None:
                        if info[0] is not None:
                            trace.natives[sid] = info[0]
                        if info[1] is not None:
                            trace.task[sid] = info[1]
                        if info[2] is not None:
                            trace.holds[format(sid, "016x")] = info[2]
                    trace.last = self._now
                    if local_root:  # the hand-off: from here no span can join this trace
                        ready = self._traces.pop(tid, None)
        if late and not own:
            self._drop(
                DropReason.LATE_SPAN,
                f"span {span.name!r} ended after its trace was assembled or expired (its parent ended first); "
                "not derived",
            )
        if full:
            self._drop(DropReason.TRACE_OVER_BUDGET, f"more than {self._max_traces} open traces with framework spans")
        if over:
            self._drop(DropReason.TRACE_OVER_BUDGET, f"a trace has more than {self._max_spans} spans; span ignored")
        if ready is not None:
            self._assemble(ready, tid, ctx.trace_flags.sampled)

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
            prices=self._prices,
        )
        self.waits.record(events, trace.holds)

    def after_fork(self) -> None:
        """In a forked child (the runtime's fork hook): a fresh lock (one held by another thread at
        fork would never be released), and none of the parent's open spans and traces."""
        self._lock = threading.Lock()
        self._open.clear()
        self._started.clear()
        self._traces.clear()
        self._gone.clear()
        self.waits.after_fork()

    def install_hooks(self) -> None:
        """Hook the frameworks that say a run stopped for a human only in what the run returns
        (the OpenAI Agents SDK), once their module is imported; `shutdown()` removes the hooks."""
        undo = hooks.install(self.waits)
        if undo is not None:
            self._hooks.append(undo)
            self._hooks_wanted = False


def _warner(drop: Any) -> Warn:
    """The rate-limited warnings behind `drop` (Metrics.drop, Recorder.drop), else a fresh one."""
    owner = getattr(drop, "__self__", None)
    found = getattr(owner, "warnings", None) or getattr(getattr(owner, "metrics", None), "warnings", None)
    return found.warn if isinstance(found, RateLimitedWarnings) else RateLimitedWarnings().warn


def install(
    setup: TracingSetup,
    sink: EventSink,
    drop: Any,
    *,
    exemplars: bool,
    version: str | None = None,
    prices: Prices | None = None,
    trace_timeout: float = DEFAULT_TRACE_TIMEOUT,
    warn: Warn | None = None,
    provider_grace: float = DEFAULT_PROVIDER_GRACE,
    clock: Callable[[], float] = time.monotonic,
    tasks: Any = None,
) -> SpanBridge:
    """Add a bridge to the providers that make framework spans: the one the library's spans come
    from, the application's global one (now, when `tick()` or the library's first span sees it set)."""
    bridge = SpanBridge(
        sink, drop, exemplars=exemplars, version=version, prices=prices, trace_timeout=trace_timeout,
        provider_grace=provider_grace, own_provider=setup.own_provider, warn=warn, clock=clock, tasks=tasks,
    )  # fmt: skip
    bridge.install_hooks()
    bridge.attach(setup.provider)
    bridge.attach(trace.get_tracer_provider())
    setup.on_app_provider = bridge.attach
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


def _summary(span: ReadableSpan, scope: str | None) -> SpanSummary:
    attrs = _attributes(span)
    status = span.status
    events = [(e.name, e.attributes or {}) for e in span.events] if span.events else []
    return summarize(
        span.context.span_id,
        span.parent.span_id if span.parent is not None else None,
        span.name,
        attrs,
        scope,
        not status.is_ok and not status.is_unset,
        status.description,
        events,
        span.start_time or 0,
        span.end_time or 0,
    )
