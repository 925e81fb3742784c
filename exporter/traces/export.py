"""The OpenTelemetry side: which provider makes the library's spans, and bounded OTLP export.

Which provider (docs/architecture.md, "Whose TracerProvider"): with an explicit `otlp_endpoint` /
`span_exporter`, a private provider of the library's own, so the application's provider is never
touched; otherwise the application's global provider as soon as it sets one (resolved lazily, like
OTel's ProxyTracer), and until then a private one, so span ids still reach logs and exemplars.
OTel context does not depend on the provider: parent and child link across the two either way.

The SDK's own BatchSpanProcessor logs a warning per dropped span and its `force_flush()` ignores
its timeout (measured here: 6.6 s for one span with a dead endpoint, 28.9 s shutdown). Agents
must never wait on telemetry, so spans go through `BoundedSpanProcessor`: a fixed-size queue
that drops and counts when full, one worker thread, an export timeout, a flush and a shutdown
that give up after their deadline instead of holding the process.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

from .. import _suppress
from ..semconv import DropReason
from .sampling import SamplingSpanProcessor

DropCallback = Callable[[DropReason, str, int], None]

DEFAULT_EXPORT_TIMEOUT = 5.0  # seconds for one OTLP request, retries included
DEFAULT_SHUTDOWN_TIMEOUT = 1.5  # seconds exit may wait for queued spans (+ teardown stays under 2 s)
DEFAULT_MAX_QUEUE = 2048
DEFAULT_BATCH = 512
DEFAULT_SCHEDULE_DELAY = 1.0
SCOPE = "agent_exporter"  # the instrumentation scope of the library's spans

# Providers the library made: never mistaken for an application's when one is global.
_own_providers: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


class BoundedSpanProcessor(SpanProcessor):
    """Batch export on a worker thread; never blocks `on_end`, drops and counts when full."""

    def __init__(
        self,
        exporter: SpanExporter,
        on_drop: DropCallback,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE,
        max_batch_size: int = DEFAULT_BATCH,
        schedule_delay: float = DEFAULT_SCHEDULE_DELAY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        self.exporter = exporter
        self._on_drop = on_drop
        self._max_queue = max_queue_size
        self._batch = max_batch_size
        self._delay = schedule_delay
        self.shutdown_timeout = shutdown_timeout  # the runtime sets its exit budget here
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopped = False
        self._deadline = 0.0  # monotonic time the shutdown gives up at
        self._forked_ns = 0  # in a forked child: spans started before this are the parent's
        self.exported = 0
        self.lost = 0  # spans dropped (queue full, export failed): force_flush() reports them
        self._thread: threading.Thread | None = None  # started on the first span (again after a fork)
        self._start_lock = threading.Lock()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped:
                t = _suppress.thread(self._run, "agent-exporter-spans")  # its posts are never traced
                t.start()
                self._thread = t

    def after_fork(self) -> None:
        """In a forked child: an empty queue, fresh events and locks, a worker on the first span;
        spans the parent started are the parent's to export (no duplicate from the child)."""
        self._queue.clear()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._start_lock = threading.Lock()
        self._thread = None
        self._forked_ns = time.time_ns()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped or not span.context.trace_flags.sampled:
            return
        if self._thread is None:
            if self._forked_ns and (span.start_time or 0) < self._forked_ns:
                return  # started before the fork: the parent exports it
            self._ensure_worker()
        if len(self._queue) >= self._max_queue:
            self.lost += 1
            self._on_drop(DropReason.EXPORT_QUEUE_FULL, "span export queue full; dropping spans", 1)
            return
        self._queue.append(span)
        if len(self._queue) >= self._batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        self._idle.clear()
        try:
            while self._queue and not (self._stopped and self._deadline_passed()):
                batch: list[ReadableSpan] = []
                while self._queue and len(batch) < self._batch:
                    batch.append(self._queue.popleft())
                self._export(batch)
        finally:
            self._idle.set()

    def _deadline_passed(self) -> bool:
        return time.monotonic() > self._deadline

    def _export(self, batch: Sequence[ReadableSpan]) -> None:
        try:
            result = self.exporter.export(batch)
        except Exception as exc:  # noqa: BLE001 - an exporter must not kill the worker
            self.lost += len(batch)
            self._on_drop(DropReason.EXPORT_FAILURE, f"span export raised {type(exc).__name__}: {exc}", len(batch))
            return
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self.lost += len(batch)
            self._on_drop(DropReason.EXPORT_FAILURE, "span export failed (backend down or refusing)", len(batch))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued, waiting at most the timeout (really); True if it all arrived.

        False when spans are still queued or in flight at the deadline, or were dropped meanwhile.
        """
        if self._stopped:
            return False
        lost = self.lost
        deadline = time.monotonic() + timeout_millis / 1000
        while True:
            if not self._queue and self._idle.is_set():
                return self.lost == lost
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.005)

    def shutdown(self) -> None:
        """Stop the worker; export what fits in the shutdown deadline, drop and count the rest."""
        if self._stopped:
            return
        self.stop(self.shutdown_timeout)

    def stop(self, timeout: float) -> None:
        """`shutdown()` within `timeout` seconds (the runtime's exit budget)."""
        if self._stopped:
            return
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(max(0.0, timeout))
        # Pop one by one: a worker still draining may pop concurrently, and each span must be
        # counted by exactly one of us (len() then clear() could count a span twice).
        left = 0
        while True:
            try:
                self._queue.popleft()
            except IndexError:
                break
            left += 1
        if left:
            self.lost += left
            self._on_drop(DropReason.EXPORT_FAILURE, f"{left} spans not exported before shutdown deadline", left)
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001 - shutting down must not raise at exit
            pass


def _global_provider() -> Any:
    """The provider given to `trace.set_tracer_provider()`, or None.

    Read the way OTel's own ProxyTracer reads it: `trace.get_tracer_provider()` costs 1.5 µs here
    (it looks in os.environ on every call) and this runs at every span start until an
    application sets its provider. tests/test_tracing.py checks the name still exists.
    """
    return getattr(trace, "_TRACER_PROVIDER", None)


def _is_app_provider(provider: Any) -> bool:
    """A provider the application (or another library) set up; ours and the no-op ones are not."""
    return (
        provider is not None
        and not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        and provider not in _own_providers
    )


@dataclass
class TracingSetup:
    """What `configure()` built or reused for traces."""

    tracer: trace.Tracer  # what the library starts its spans with
    provider: Any  # where they come from now: the application's provider or `own_provider`
    processor: BoundedSpanProcessor | None = None  # the library's export (in `own_provider`)
    own_provider: TracerProvider | None = None  # made by the library: the only one shutdown() ends
    flush_timeout: float = DEFAULT_EXPORT_TIMEOUT  # flush()'s default: one export's timeout
    # Called once with the application's provider when it is found after configure() (span bridge).
    on_app_provider: Callable[[Any], None] | None = None

    def exports(self) -> bool:
        """Whether the library's spans go anywhere: its own export, or a provider of the application's."""
        return self.processor is not None or (self.provider is not None and self.provider is not self.own_provider)

    def flush(self, timeout: float) -> bool:
        """Export the library's queued spans within `timeout` seconds; True if all arrived."""
        deadline = time.monotonic() + timeout
        ok = True
        if self.processor is not None:
            ok = self.processor.force_flush(int(timeout * 1000))
        provider = self.provider
        if provider is not None and provider is not self.own_provider:
            # The library's spans are in the application's pipeline: flush it too, still bounded.
            ok = _flush_app_provider(provider, deadline - time.monotonic()) and ok
        return ok

    def shutdown(self, timeout: float | None = None) -> None:
        """Export what fits in `timeout` (default: the processor's shutdown timeout) and shut down what
        the library made; never the application's provider."""
        if timeout is not None and self.processor is not None:
            self.processor.shutdown_timeout = max(0.0, timeout)
        if self.own_provider is not None:
            # Its processors in order: a sampling holder hands its held spans on first, then the
            # export processor sends what fits in the budget and counts the rest.
            self.own_provider.shutdown()
        elif self.processor is not None:
            self.processor.shutdown()


_app_flush: threading.Thread | None = None  # at most one waits on an application's provider


def _flush_app_provider(provider: Any, timeout: float) -> bool:
    """`provider.force_flush()` on a helper thread, waited on at most `timeout` seconds.

    The SDK's BatchSpanProcessor ignores the timeout it is given (FACTS: 6.6 s for one span to a
    dead endpoint), so the wait is ours; a flush still running is not started a second time.
    """
    global _app_flush
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return True
    deadline = time.monotonic() + timeout
    if _app_flush is not None and _app_flush.is_alive():  # an earlier flush still waits on the app
        _app_flush.join(max(timeout, 0.0))
        if _app_flush.is_alive():
            return False
        timeout = deadline - time.monotonic()
    result: list[bool] = []
    millis = int(max(timeout, 0.0) * 1000)

    def run() -> None:
        try:
            result.append(bool(force_flush(millis)))
        except Exception:  # noqa: BLE001 - the application's exporter must not reach the caller
            result.append(False)

    thread = threading.Thread(target=run, name="agent-exporter-flush", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter exit: no new threads; the application's provider flushes itself
        return False
    _app_flush = thread
    thread.join(max(timeout, 0.0))
    return bool(result) and result[0]


class _FollowingTracer(trace.Tracer):
    """The library's tracer when no exporter was given: spans go where the application's go.

    Until the application sets a global provider, spans come from the library's own provider
    (real ids; exported only if the OTEL_* variables say so); from the first span after it does,
    from the application's. OTel sets the global provider once per process, so the answer is
    cached once found, and the setup's `tracer` replaced by the resolved one (no indirection left).
    """

    def __init__(self, setup: TracingSetup, fallback: TracerProvider, version: str) -> None:
        self._setup = setup
        self._version = version
        self._fallback = fallback.get_tracer(SCOPE, version)
        self._resolved: trace.Tracer | None = None

    def _current(self) -> trace.Tracer:
        resolved = self._resolved
        if resolved is not None:
            return resolved
        provider = _global_provider()
        if provider is None:
            return self._fallback
        if _is_app_provider(provider):
            resolved = provider.get_tracer(SCOPE, self._version)
            self._setup.provider = provider
            hook = self._setup.on_app_provider
            if hook is not None:
                hook(provider)
        else:
            resolved = self._fallback
        self._resolved = resolved
        self._setup.tracer = resolved
        return resolved

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().start_as_current_span(*args, **kwargs)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def build_span_exporter(
    otlp_endpoint: str | None, export_timeout: float, on_warn: Callable[[str], object]
) -> SpanExporter | None:
    """An exporter from the explicit endpoint, else the standard OTEL_* variables; None = off."""
    traces_exporter = (_env("OTEL_TRACES_EXPORTER") or "").lower()
    if otlp_endpoint is None:
        if traces_exporter == "none":
            return None
        if traces_exporter == "console":
            return ConsoleSpanExporter()
        if not (_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env("OTEL_EXPORTER_OTLP_ENDPOINT")):
            return None
    protocol = (_env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL") or "").lower()
    timeout = export_timeout
    if _env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or _env("OTEL_EXPORTER_OTLP_TIMEOUT"):
        timeout = None  # type: ignore[assignment]  # the SDK reads the variable itself
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            on_warn(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc but the grpc exporter is not installed "
                "(pip install 'agent-exporter[grpc]'); using http/protobuf"
            )
        else:
            endpoint = otlp_endpoint.removesuffix("/v1/traces") if otlp_endpoint else None
            return GrpcExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = None
    if otlp_endpoint:
        endpoint = (
            otlp_endpoint
            if otlp_endpoint.rstrip("/").endswith("/v1/traces")
            else (otlp_endpoint.rstrip("/") + "/v1/traces")
        )
    return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)


def setup_tracing(
    *,
    service_name: str,
    enabled: bool,
    tracer_provider: Any,
    otlp_endpoint: str | None,
    span_exporter: SpanExporter | None,
    export_timeout: float,
    shutdown_timeout: float,
    set_global: bool,
    on_drop: DropCallback,
    on_warn: Callable[[str], object],
    version: str,
    sample_healthy: float = 1.0,
) -> TracingSetup:
    """Pick the provider that makes the library's spans; never add to or replace the application's.

    - `tracer_provider=` given: that provider (the caller's choice, exporters included).
    - `otlp_endpoint=` / `span_exporter=` given: a private provider with `service_name` and the
      bounded export; the application's provider, set before or after, is left alone.
    - neither: the application's global provider, now or whenever it is set; until then a
      private one, exporting only if the OTEL_* variables ask for it.
    Conflicting arguments are a ValueError here, not a silent surprise later.
    With `sample_healthy` < 1 the library's export is wrapped in a `SamplingSpanProcessor`, which
    holds each execution's spans until its outcome is known (exporter/traces/sampling.py).
    """
    if not enabled:
        return TracingSetup(trace.NoOpTracer(), None)
    explicit = otlp_endpoint is not None or span_exporter is not None
    if tracer_provider is not None:
        if explicit:
            raise ValueError(
                "tracer_provider= and otlp_endpoint=/span_exporter= both given: add your exporter to your "
                "provider, or drop tracer_provider= to export the library's spans on their own"
            )
        if set_global:
            raise ValueError(
                "set_global_tracer_provider=True with tracer_provider=: make your provider global yourself "
                "(opentelemetry.trace.set_tracer_provider)"
            )
        return TracingSetup(tracer_provider.get_tracer(SCOPE, version), tracer_provider)
    current = trace.get_tracer_provider()  # public call: also honours OTEL_PYTHON_TRACER_PROVIDER
    app = current if _is_app_provider(current) else None
    if app is not None and set_global:
        raise ValueError(
            "set_global_tracer_provider=True but the application already set a global TracerProvider; "
            "drop the flag (without otlp_endpoint the library's spans go to the application's provider)"
        )
    if app is not None and not explicit:
        return TracingSetup(app.get_tracer(SCOPE, version), app, flush_timeout=export_timeout)
    exporter = span_exporter if span_exporter is not None else build_span_exporter(
        otlp_endpoint, export_timeout, on_warn
    )
    # The runtime's one exit hook ends it (bounded): not the SDK's own atexit as well.
    own = TracerProvider(resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False)
    _own_providers.add(own)
    processor = None
    if exporter is not None:
        processor = BoundedSpanProcessor(exporter, on_drop, shutdown_timeout=shutdown_timeout)
        own.add_span_processor(processor if sample_healthy >= 1 else SamplingSpanProcessor(processor))
    setup = TracingSetup(trace.NoOpTracer(), own, processor, own, export_timeout)
    if set_global:
        _make_global(own)
    if explicit or set_global:
        setup.tracer = own.get_tracer(SCOPE, version)
    else:
        setup.tracer = _FollowingTracer(setup, own, version)
    return setup


def _make_global(provider: TracerProvider) -> None:
    """set_global_tracer_provider=True: the library's provider becomes the process's, if it can."""
    if _global_provider() is None:
        trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        # Only an earlier configure() (before reset()) gets here: an application's is a ValueError.
        warnings.warn(
            "set_global_tracer_provider=True: a global TracerProvider is already set (by a configure() "
            "before reset(); OpenTelemetry sets it once per process), so this configuration's is not global",
            RuntimeWarning,
            stacklevel=4,
        )
