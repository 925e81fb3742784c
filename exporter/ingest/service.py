"""`IngestService`: the receiver, the per-trace assembler, the recorder, `/metrics` and the forwarder.

Events are derived on one sweeper thread: it takes the traces that are complete from the
assembler, runs `spanmap.assemble` (the span bridge's code) and hands the events to a
`Recorder` (the native API's consumer), so the metrics are the same whoever made the spans.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..pipeline.exposition import start_metrics_server
from ..pipeline.logs import RateLimitedWarnings, get_logger
from ..pipeline.metrics import Metrics, exemplar_of
from ..pipeline.recorder import Recorder
from ..pricing import Prices
from ..semconv import DropReason
from ..spans.mapping import assemble
from ..spans.waits import Waits
from ..tasks.backend import StoreError, parse_url
from ..tasks.sink import TaskSink
from . import assembly
from . import forward as fwd
from .receiver import DEFAULT_MAX_PENDING_BYTES, DEFAULT_REQUEST_TIMEOUT, Outcome, Receiver, serve

log = logging.getLogger("agent_exporter.ingest")

# The service's own metrics (beside the agent_* metrics it derives and agent_exporter_dropped_total).
INGEST_REQUESTS: Final = "agent_ingest_requests_total"  # by HTTP status code answered
INGEST_SPANS_RECEIVED: Final = "agent_ingest_spans_received_total"  # spans in accepted requests
INGEST_SPANS_REJECTED: Final = "agent_ingest_spans_rejected_total"  # invalid ids: partial success
INGEST_SPANS_NOT_DERIVED: Final = "agent_ingest_spans_not_derived_total"  # by reason (assembly.REASONS)
INGEST_SPANS_LOOPED: Final = "agent_ingest_spans_looped_total"  # came back: this service forwarded them
INGEST_FORWARD_SPANS: Final = "agent_ingest_forward_spans_total"  # by outcome: sent, failed, shutdown
INGEST_OPEN_TRACES: Final = "agent_ingest_open_traces"
INGEST_HELD_SPANS: Final = "agent_ingest_held_spans"
INGEST_FORWARD_QUEUE_BYTES: Final = "agent_ingest_forward_queue_bytes"
INGEST_METRICS: Final = (
    INGEST_REQUESTS, INGEST_SPANS_RECEIVED, INGEST_SPANS_REJECTED, INGEST_SPANS_NOT_DERIVED,
    INGEST_SPANS_LOOPED, INGEST_FORWARD_SPANS, INGEST_OPEN_TRACES, INGEST_HELD_SPANS, INGEST_FORWARD_QUEUE_BYTES,
)  # fmt: skip

DEFAULT_PORT = 4318  # the OTLP/HTTP port
DEFAULT_METRICS_PORT = 9464


@dataclass(frozen=True)
class IngestSettings:
    """Everything `agent-exporter ingest` takes; checked at construction (ValueError)."""

    port: int = DEFAULT_PORT
    addr: str = "127.0.0.1"
    grpc_port: int | None = None  # OTLP/gRPC (needs grpcio); 4317 by convention; None = off
    metrics_port: int | None = DEFAULT_METRICS_PORT
    metrics_addr: str = "127.0.0.1"
    forward: str | None = None  # the next hop's OTLP/HTTP traces URL
    forward_headers: tuple[tuple[str, str], ...] = ()
    token: str | None = None  # bearer token senders must present
    certfile: str | None = None
    keyfile: str | None = None
    client_cafile: str | None = None
    client_auth_required: bool = False
    metrics_certfile: str | None = None
    metrics_keyfile: str | None = None
    metrics_client_cafile: str | None = None
    metrics_client_auth_required: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    max_concurrent: int = 4
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES  # bodies held at once (read, waiting, decoded)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds for a whole request: 408 past it
    max_connections: int = 256  # open OTLP/HTTP connections (a thread each); more are answered 503
    max_queue_bytes: int = fwd.DEFAULT_MAX_QUEUE_BYTES
    grace: float = assembly.DEFAULT_GRACE
    trace_timeout: float = assembly.DEFAULT_TIMEOUT
    max_traces: int = assembly.DEFAULT_MAX_TRACES
    max_spans: int = assembly.DEFAULT_MAX_SPANS
    max_spans_per_trace: int = assembly.DEFAULT_MAX_SPANS_PER_TRACE
    sweep_interval: float = 0.2
    task_store: str | None = None  # the task list: every derived execution in this store (docs/tasks.md)

    def __post_init__(self) -> None:
        if self.task_store is not None:
            try:
                parse_url(self.task_store)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
        for name in ("port", "metrics_port", "grpc_port"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 65535:
                raise ValueError(f"{name} must be within 0..65535, got {v}")
        for tls in (("certfile", "keyfile"), ("metrics_certfile", "metrics_keyfile")):
            if (getattr(self, tls[0]) is None) != (getattr(self, tls[1]) is None):
                raise ValueError(f"{tls[0]} and {tls[1]} go together")
        if self.client_cafile and not self.certfile:
            raise ValueError("client_cafile needs TLS: pass certfile and keyfile")
        if self.metrics_client_cafile and not self.metrics_certfile:
            raise ValueError("metrics_client_cafile needs TLS: pass metrics_certfile and metrics_keyfile")
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise ValueError("token must be non-empty without white space")
        if self.max_queue_bytes < self.max_body_bytes:
            raise ValueError("max_queue_bytes must be >= max_body_bytes (a full-size request must fit the queue)")
        if self.max_connections < self.max_concurrent:
            raise ValueError("max_connections must be >= max_concurrent")
        if self.sweep_interval <= 0:
            raise ValueError("sweep_interval must be > 0")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        if self.max_pending_bytes < self.max_body_bytes:
            raise ValueError("max_pending_bytes must be >= max_body_bytes (a full-size body must fit)")
        if self.forward is not None and self.port:
            refuse_forward_to_self(self.forward, self.addr, self.port)


# Host names that reach a listener on the loopback or wildcard address of this machine.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def forwards_to_itself(forward: str, addr: str, port: int) -> bool:
    """True when the `forward` URL names the OTLP listener at `addr`:`port` itself: the same port
    and the bound address, or, when that is a loopback or wildcard address, any loopback or
    wildcard spelling (127.0.0.1, localhost, 0.0.0.0, ::1, ::). No DNS look-up is made."""
    parts = urlsplit(forward)
    try:
        to_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if to_port != port or not host:
        return False
    bound = _ip(addr)
    if host == addr.lower() or (bound is not None and _ip(host) == bound):
        return True
    if bound is None or not (bound.is_loopback or bound.is_unspecified):
        return False
    target = _ip(host)
    return host in _LOCAL_NAMES or (target is not None and (target.is_loopback or target.is_unspecified))


def refuse_forward_to_self(forward: str, addr: str, port: int) -> None:
    """ValueError naming the options when `forward` is this service's own OTLP listener."""
    if forwards_to_itself(forward, addr, port):
        raise ValueError(
            f"--forward {forward} is this service's own OTLP listener (--addr {addr} --port {port}): "
            "every span it forwards would come back to it. Give --forward the next hop's URL "
            "(Jaeger's or a Collector's OTLP/HTTP port, e.g. http://127.0.0.1:14318/v1/traces when "
            "it runs on this machine), or serve on another --port, or leave --forward out (derive only)"
        )


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class IngestService:
    """Start with `start()`, stop with `stop()` (also a context manager)."""

    def __init__(
        self, settings: IngestSettings, *, registry: CollectorRegistry | None = None, log_level: int = 30
    ) -> None:
        self.settings = s = settings
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry, warnings=RateLimitedWarnings(min_level=log_level))
        self.prices = Prices()  # model usage priced from genai-prices' offline snapshot, as in the library
        self.recorder = Recorder(self.metrics, get_logger(), log_level)
        self.tasks = TaskSink(s.task_store, self.metrics) if s.task_store else None
        self.recorder.tasks = self.tasks
        # Runs whose root says task.status="waiting": parked, and resumed by the next of the same task id.
        self.waits = Waits(self.recorder, self.recorder.drop, tasks=self.tasks)
        self.assembler = assembly.Assembler(
            grace=s.grace, timeout=s.trace_timeout, max_traces=s.max_traces, max_spans=s.max_spans,
            max_spans_per_trace=s.max_spans_per_trace,
        )  # fmt: skip
        r = self.registry
        self._requests = _counter(INGEST_REQUESTS, "OTLP requests answered, by HTTP status code.", r, "code")
        self._received = _counter(INGEST_SPANS_RECEIVED, "Spans in accepted OTLP requests.", r)
        self._rejected = _counter(
            INGEST_SPANS_REJECTED, "Spans rejected for invalid ids (partial success): not derived, not forwarded.", r
        )
        self._not_derived = _counter(
            INGEST_SPANS_NOT_DERIVED, "Accepted spans not derived into metrics (forwarded), by reason.", r, "reason"
        )
        self._looped = _counter(
            INGEST_SPANS_LOOPED,
            "Spans that came back to this service after it forwarded them (a forwarding loop): "
            "not derived, not forwarded again.",
            r,
        )
        self._forwarded = _counter(
            INGEST_FORWARD_SPANS, "Spans handed to the next hop, by outcome: sent, failed, shutdown.", r, "outcome"
        )
        open_traces = Gauge(INGEST_OPEN_TRACES, "Traces held, waiting for their root and grace period.", registry=r)
        open_traces.set_function(lambda: self.assembler.open_traces)
        held = Gauge(INGEST_HELD_SPANS, "Span summaries held for assembly.", registry=r)
        held.set_function(lambda: self.assembler.held)
        Gauge(INGEST_FORWARD_QUEUE_BYTES, "Bytes queued for the next hop.", registry=r).set_function(self._queued_bytes)
        for reason in assembly.REASONS:
            self._not_derived.labels(reason)
        for outcome in (fwd.SENT, fwd.FAILED, fwd.SHUTDOWN):
            self._forwarded.labels(outcome)
        self.forwarder: fwd.Forwarder | None = None
        self._servers: list[Any] = []
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.port: int | None = None
        self.grpc_port: int | None = None
        self._grpc: Any = None
        self.metrics_port: int | None = None
        # This service's id on what it forwards (otlp.VIA): what comes back with it is a loop.
        self.instance_id = uuid.uuid4().hex

    # ------------------------------------------------------------------ life cycle

    def start(self) -> IngestService:
        """Bind the ports and start the threads; raises OSError / ValueError if it cannot."""
        s = self.settings
        try:
            if s.forward and s.port:
                refuse_forward_to_self(s.forward, s.addr, s.port)
            if s.forward:
                headers = dict(s.forward_headers)
                self.forwarder = fwd.Forwarder(
                    s.forward, count=self._count_forward, headers=headers, max_queue_bytes=s.max_queue_bytes
                )
            receiver = Receiver(
                add=self.assembler.add,
                offer=self.forwarder.offer if self.forwarder is not None else None,
                counted=self._count_request,
                token=s.token,
                max_body_bytes=s.max_body_bytes,
                max_concurrent=s.max_concurrent,
                max_pending_bytes=s.max_pending_bytes,
                instance=self.instance_id,
            )
            httpd, _ = serve(
                receiver, s.addr, s.port, certfile=s.certfile, keyfile=s.keyfile,
                client_cafile=s.client_cafile, client_auth_required=s.client_auth_required,
                max_connections=s.max_connections, request_timeout=s.request_timeout,
            )  # fmt: skip
            self._servers.append(httpd)
            self.port = httpd.server_address[1]
            if s.forward:
                refuse_forward_to_self(s.forward, s.addr, self.port)  # --port 0: the port it got
            if s.grpc_port is not None:
                from .grpc_receiver import serve_grpc

                self._grpc, self.grpc_port = serve_grpc(
                    receiver, s.addr, s.grpc_port, token=s.token, max_message_bytes=s.max_body_bytes,
                    max_concurrent=s.max_concurrent, certfile=s.certfile, keyfile=s.keyfile,
                    client_cafile=s.client_cafile, client_auth_required=s.client_auth_required,
                )  # fmt: skip
            if s.metrics_port is not None:
                mhttpd, _ = start_metrics_server(
                    s.metrics_port, s.metrics_addr, self.registry, certfile=s.metrics_certfile,
                    keyfile=s.metrics_keyfile, client_cafile=s.metrics_client_cafile,
                    client_auth_required=s.metrics_client_auth_required,
                )  # fmt: skip
                self._servers.append(mhttpd)
                self.metrics_port = mhttpd.server_address[1]
        except BaseException:
            self.stop()
            raise
        self._sweeper = threading.Thread(target=self._sweep, name="agent-exporter-ingest-sweeper", daemon=True)
        self._sweeper.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving, derive every held trace, forward what is queued (up to `timeout` s)."""
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        self._servers.clear()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait(2.0)
            self._grpc = None
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
            self._sweeper = None
        self.derive(everything=True)
        if self.forwarder is not None:
            self.forwarder.close(timeout)
        if self.tasks is not None:
            self.tasks.close(timeout)

    def __enter__(self) -> IngestService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ work

    def derive(self, everything: bool = False) -> int:
        """Assemble the traces that are due (all held ones with `everything`); returns how many."""
        due = self.assembler.due(everything)
        exemplars = self.metrics.exemplars
        for tid, spans in due:
            try:
                hex_id = tid.hex()
                exemplar = exemplar_of(hex_id) if exemplars else None
                self.waits.record(assemble(spans, trace_id=hex_id, exemplar=exemplar, prices=self.prices))
            except Exception as exc:  # noqa: BLE001 - one bad trace must not stop the others
                self.recorder.drop(DropReason.INTERNAL_ERROR, f"ingest could not assemble a trace: {exc!r}")
        return len(due)

    def _sweep(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval):
            try:
                self.derive()
            except Exception:  # noqa: BLE001
                log.exception("ingest sweeper failed")

    def _count_request(self, code: int, outcome: Outcome | None) -> None:
        self._requests.labels(str(code)).inc()
        if outcome is None:
            return
        self._received.inc(outcome.spans)
        if outcome.rejected:
            self._rejected.inc(outcome.rejected)
        if outcome.looped:
            self._looped.inc(outcome.looped)
            self.metrics.warnings.warn(
                "ingest_loop",
                f"{outcome.looped} spans came back to this service (instance {self.instance_id}) after it "
                f"forwarded them: a forwarding loop (--forward {self.settings.forward} leads back here); "
                "they were not derived or forwarded again",
            )
        for reason, n in outcome.not_derived.items():
            self._not_derived.labels(reason).inc(n)
            self.metrics.warnings.warn(f"ingest_{reason}", f"{n} spans not derived into metrics: {reason}")

    def _count_forward(self, outcome: str, spans: int) -> None:
        self._forwarded.labels(outcome).inc(spans)

    def _queued_bytes(self) -> float:
        return float(self.forwarder.queued_bytes) if self.forwarder is not None else 0.0


def _counter(name: str, help: str, registry: CollectorRegistry, *labels: str) -> Counter:  # noqa: A002
    return Counter(name.removesuffix("_total"), help, labels, registry=registry)
