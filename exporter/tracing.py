"""The OpenTelemetry side: reuse or create the TracerProvider, export OTLP with bounded cost.

The SDK's own BatchSpanProcessor logs a warning per dropped span and its `force_flush()` ignores
its timeout (measured here: 6.6 s for one span with a dead endpoint, 28.9 s shutdown). Agents
must never wait on telemetry, so spans go through `BoundedSpanProcessor`: a fixed-size queue
that drops and counts when full, one worker thread, an export timeout, and a shutdown that
gives up after a deadline instead of holding the process at exit.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

from .semconv import DropReason

DropCallback = Callable[[DropReason, str, int], None]

DEFAULT_EXPORT_TIMEOUT = 5.0  # seconds for one OTLP request, retries included
DEFAULT_SHUTDOWN_TIMEOUT = 1.5  # seconds exit may wait for queued spans (+ teardown stays under 2 s)
DEFAULT_MAX_QUEUE = 2048
DEFAULT_BATCH = 512
DEFAULT_SCHEDULE_DELAY = 1.0


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
        self._shutdown_timeout = shutdown_timeout
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopped = False
        self._deadline = 0.0  # monotonic time the shutdown gives up at
        self._pid = os.getpid()
        self.exported = 0
        self._thread = self._start_worker()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _start_worker(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name="agent-exporter-spans", daemon=True)
        t.start()
        return t

    def _after_fork(self) -> None:
        # A forked worker gets an empty queue and its own thread (the parent's did not survive).
        self._queue.clear()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._pid = os.getpid()
        if not self._stopped:
            self._thread = self._start_worker()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped or not span.context.trace_flags.sampled:
            return
        if len(self._queue) >= self._max_queue:
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
            self._on_drop(DropReason.EXPORT_FAILURE, f"span export raised {type(exc).__name__}: {exc}", len(batch))
            return
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self._on_drop(DropReason.EXPORT_FAILURE, "span export failed (backend down or refusing)", len(batch))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Ask the worker to export what is queued; wait at most the timeout (really)."""
        if self._stopped:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        while time.monotonic() < deadline:
            if not self._queue and self._idle.is_set():
                return True
            self._wake.set()
            time.sleep(0.005)
        return not self._queue

    def shutdown(self) -> None:
        """Stop the worker; export what fits in the shutdown deadline, drop and count the rest."""
        if self._stopped:
            return
        self._deadline = time.monotonic() + self._shutdown_timeout
        self._stopped = True
        self._wake.set()
        if self._pid == os.getpid():
            self._thread.join(self._shutdown_timeout)
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
            self._on_drop(DropReason.EXPORT_FAILURE, f"{left} spans not exported before shutdown deadline", left)
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001 - shutting down must not raise at exit
            pass


@dataclass
class TracingSetup:
    """What `configure()` built or reused for traces."""

    tracer: trace.Tracer
    provider: Any
    processor: BoundedSpanProcessor | None
    owns_provider: bool


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
) -> TracingSetup:
    """Reuse the application's TracerProvider if it set one; never replace it."""
    if not enabled:
        return TracingSetup(trace.NoOpTracer(), None, None, False)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    app_provider = tracer_provider is not None or not isinstance(
        provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )
    explicit = otlp_endpoint is not None or span_exporter is not None
    exporter = span_exporter
    if exporter is None and (explicit or not app_provider):
        exporter = build_span_exporter(otlp_endpoint, export_timeout, on_warn)
    processor = None
    if app_provider:
        # The application owns its pipeline; add ours only when asked for explicitly.
        if exporter is not None and explicit:
            if isinstance(provider, TracerProvider):
                processor = BoundedSpanProcessor(exporter, on_drop, shutdown_timeout=shutdown_timeout)
                provider.add_span_processor(processor)
            else:
                on_warn("the application's TracerProvider is not the SDK's; otlp_endpoint ignored")
        owns = False
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is not None:
            processor = BoundedSpanProcessor(exporter, on_drop, shutdown_timeout=shutdown_timeout)
            provider.add_span_processor(processor)
        if set_global:
            trace.set_tracer_provider(provider)
        owns = True
    tracer = provider.get_tracer("agent_exporter", version)
    return TracingSetup(tracer, provider, processor, owns)
