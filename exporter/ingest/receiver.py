"""The OTLP/HTTP receiver: `POST /v1/traces`, answered as the OTLP specification asks.

A request is either accepted whole (its spans derived and queued for the next hop) or refused
with no effect, so a sender's retry never counts an execution twice:

- 401 without the bearer token (when one is set), 404 another path, 405 another method,
  415 a content type other than protobuf / JSON (or an unknown Content-Encoding), 411 neither
  Content-Length nor chunked; these are answered without decoding the body (discarded unread in
  64 KiB pieces up to DRAIN_LIMIT; past it, or chunked, the connection is closed);
- 413 a body (or what its gzip inflates to) over `max_body_bytes`;
- 400 a body that does not decode (truncated or garbage protobuf, bad JSON, bad gzip);
- 429 with `Retry-After` when `max_concurrent` requests are already being decoded;
- 503 with `Retry-After` when the forward queue is full;
- 200 with `partial_success` when spans with invalid ids were rejected (not derived, not
  forwarded) or spans were not derived (over a budget, late: a warning, `rejected_spans` 0).

Memory: at most `max_concurrent` bodies of `max_body_bytes` are held at once (twice that with
gzip), each connection has a socket timeout, and bodies are read in chunks up to the limit
(chunked bodies, which the Node.js exporter sends without Content-Length, included).
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import IO, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .otlp import (
    PROTOBUF,
    BadRequest,
    TooLarge,
    error_body,
    inflate,
    media_type,
    parse,
    response,
    summaries,
    without_invalid,
)

log = logging.getLogger("agent_exporter.ingest")

PATH = "/v1/traces"
RETRY_AFTER = "1"  # seconds; the OTel SDKs back off further on their own
DRAIN_LIMIT = 64 * 1024 * 1024  # an unwanted body up to this size is read and discarded, not reset


class Outcome:
    """What one accepted request did, for the service's counters."""

    __slots__ = ("spans", "rejected", "not_derived")

    def __init__(self, spans: int, rejected: int, not_derived: dict[str, int]) -> None:
        self.spans, self.rejected, self.not_derived = spans, rejected, not_derived


class Receiver:
    """Decodes requests and hands them on; the HTTP server around it is built by `serve()`."""

    def __init__(
        self,
        *,
        add: Callable[[Any], dict[str, int]],
        offer: Callable[[bytes, int], bool] | None,
        counted: Callable[[int, Outcome | None], None],
        token: str | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        max_concurrent: int = 4,
    ) -> None:
        if max_body_bytes < 1 or max_concurrent < 1:
            raise ValueError("max_body_bytes and max_concurrent must be >= 1")
        self._add = add
        self._offer = offer
        self._counted = counted
        self._token = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """Answer one request (never raises: the server thread must survive anything)."""
        try:
            self._handle(h)
        except (OSError, ssl.SSLError):
            h.close_connection = True  # the sender went away or timed out
        except Exception:  # noqa: BLE001 - a bug answers 500, the service stays up
            log.exception("ingest request failed")
            with contextlib.suppress(Exception):
                self._reply(h, 500, None, "internal error", close=True)

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        chunked = "chunked" in (h.headers.get("Transfer-Encoding") or "").lower()
        length = None
        if not chunked:
            try:
                length = int(h.headers.get("Content-Length") or "")
            except ValueError:
                return self._reply(h, 411, None, "Content-Length or chunked transfer encoding required", close=True)
            if length < 0:
                return self._reply(h, 400, None, "negative Content-Length", close=True)
        if h.path.split("?", 1)[0] != PATH:
            return self._refuse(h, 404, None, f"only {PATH} is served", length)
        if self._token is not None:
            given = (h.headers.get("Authorization") or "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, self._token):
                return self._refuse(h, 401, None, "bearer token required", length, {"WWW-Authenticate": "Bearer"})
        kind = media_type(h.headers.get("Content-Type"))
        if kind is None:
            return self._refuse(h, 415, None, "Content-Type must be application/x-protobuf or application/json", length)
        encoding = (h.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("gzip", "identity"):
            return self._refuse(h, 415, kind, f"unsupported Content-Encoding {encoding[:40]!r}", length)
        if length is not None and length > self.max_body_bytes:
            return self._refuse(h, 413, kind, f"body over {self.max_body_bytes} bytes", length)
        if not self._slots.acquire(blocking=False):
            return self._refuse(h, 429, kind, "too many requests at once", length, {"Retry-After": RETRY_AFTER})
        try:
            self._accept(h, kind, encoding, length)
        finally:
            self._slots.release()

    def _refuse(
        self,
        h: http.server.BaseHTTPRequestHandler,
        code: int,
        kind: str | None,
        message: str,
        length: int | None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Answer without using the body: it is read and discarded in small pieces (so the sender
        sees the answer rather than a reset connection) up to DRAIN_LIMIT, else the connection closes."""
        close = length is None or length > DRAIN_LIMIT
        if not close:
            assert length is not None
            while length > 0:
                got = h.rfile.read(min(length, 65536))
                if not got:
                    close = True
                    break
                length -= len(got)
        self._reply(h, code, kind, message, close=close, extra=extra)

    def _accept(self, h: http.server.BaseHTTPRequestHandler, kind: str, encoding: str, length: int | None) -> None:
        limit = self.max_body_bytes
        try:
            rfile: Any = h.rfile
            body = read_chunked(rfile, limit) if length is None else read_exact(rfile, length)
        except _ChunkedTooLarge as exc:
            # Read the rest away (up to DRAIN_LIMIT) so the sender sees the 413, not a reset.
            drained = drain_chunked(rfile, exc.pending, DRAIN_LIMIT)
            return self._reply(h, 413, kind, str(exc), close=not drained)
        except TooLarge as exc:
            return self._reply(h, 413, kind, str(exc), close=True)
        except BadRequest as exc:
            return self._reply(h, 400, kind, str(exc), close=True)
        try:
            if encoding == "gzip":
                body = inflate(body, limit)
            request = parse(body, kind)
        except TooLarge as exc:
            return self._reply(h, 413, kind, str(exc))
        except BadRequest as exc:
            return self._reply(h, 400, kind, str(exc))
        accepted = self.take(request, body if kind == PROTOBUF else None)
        if accepted is None:
            return self._reply(h, 503, kind, "forward queue full", extra={"Retry-After": RETRY_AFTER}, counted=True)
        rejected, message = accepted
        self._send(h, 200, response(kind, rejected, message), kind, False, {})

    def count(self, code: int) -> None:
        """Count an answer given without `take` (the gRPC front's refusals)."""
        self._counted(code, None)

    def take(self, request: ExportTraceServiceRequest, wire: bytes | None) -> tuple[int, str] | None:
        """Derive and forward a decoded request (HTTP or gRPC): (rejected spans, message for the
        partial success), or None when the forward queue is full (then nothing was done).

        `wire` is the request's protobuf body when it came as one: forwarded as it is, unless
        spans had to be taken out."""
        decoded = summaries(request)
        valid = decoded.spans - decoded.rejected
        if self._offer is not None and valid:
            if wire is None or decoded.rejected:
                wire = without_invalid(request).SerializeToString()
            if not self._offer(wire, valid):
                self._counted(503, None)
                return None
        not_derived = self._add(decoded.traces)
        message = ""
        if decoded.rejected:
            message = f"{decoded.rejected} spans with invalid trace or span ids rejected"
        elif not_derived:
            message = "spans accepted; not derived into metrics: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(not_derived.items())
            )
        self._counted(200, Outcome(decoded.spans, decoded.rejected, not_derived))  # before the answer is sent
        return decoded.rejected, message

    def _reply(
        self,
        h: http.server.BaseHTTPRequestHandler,
        code: int,
        kind: str | None,
        message: str,
        *,
        close: bool = False,
        extra: dict[str, str] | None = None,
        counted: bool = False,
    ) -> None:
        body, content_type = error_body(kind, code, message)
        if not counted:
            self._counted(code, None)
        self._send(h, code, body, content_type, close, extra or {})

    @staticmethod
    def _send(
        h: http.server.BaseHTTPRequestHandler,
        code: int,
        body: bytes,
        content_type: str,
        close: bool,
        extra: dict[str, str],
    ) -> None:
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            h.send_header(k, v)
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)


def read_exact(rfile: IO[bytes], length: int) -> bytes:
    data = rfile.read(length)
    if len(data) < length:
        raise BadRequest(f"body ended after {len(data)} of {length} bytes")
    return data


def read_chunked(rfile: IO[bytes], limit: int) -> bytes:
    """A chunked body (RFC 9112 §7.1), refusing more than `limit` bytes of data."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1026)
        if not line.endswith(b"\n"):
            raise BadRequest("bad chunk header")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size < 0:
            raise BadRequest("bad chunk size")
        if size == 0:
            for _ in range(64):  # trailer fields, then the empty line
                if rfile.readline(8194) in (b"\r\n", b"\n", b""):
                    return b"".join(parts)
            raise BadRequest("too many trailer fields")
        total += size
        if total > limit:
            raise _ChunkedTooLarge(f"body over {limit} bytes", pending=size)
        data = rfile.read(size)
        if len(data) < size:
            raise BadRequest("truncated chunk")
        parts.append(data)
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise BadRequest("chunk not followed by CRLF")


class _ChunkedTooLarge(TooLarge):
    """Over the limit in the middle of a chunked body: `pending` bytes of the current chunk unread."""

    def __init__(self, message: str, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


def drain_chunked(rfile: IO[bytes], pending: int, budget: int) -> bool:
    """Discard the rest of a chunked body (the current chunk's `pending` bytes first), reading at
    most `budget` bytes; True when the body ended cleanly (the connection can be kept)."""
    try:
        size = pending
        while True:
            while size > 0:
                if budget <= 0:
                    return False
                got = rfile.read(min(size, 65536, budget))
                if not got:
                    return False
                size -= len(got)
                budget -= len(got)
            if rfile.readline(3) not in (b"\r\n", b"\n"):
                return False
            line = rfile.readline(1026)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                for _ in range(64):
                    if rfile.readline(8194) in (b"\r\n", b"\n", b""):
                        return True
                return False
    except (ValueError, OSError):
        return False


_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them: past that a connection is
    answered 503 (plain HTTP; closed under TLS, whose handshake belongs to the connection's thread)."""

    daemon_threads = True
    request_queue_size = 128
    max_connections = 256
    refused: Callable[[int], None] = staticmethod(lambda code: None)
    _slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused(503)
            if not isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(1.0)
                    request.sendall(_BUSY)
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(
    receiver: Receiver,
    addr: str,
    port: int,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
    client_auth_required: bool = False,
    socket_timeout: float = 30.0,
    max_connections: int = 256,
) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """Bind and serve on a daemon thread; TLS (and mutual TLS) as for `/metrics`. Raises OSError."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: OTLP exporters reuse their connection
        server_version = "agent-exporter-ingest"

        def version_string(self) -> str:
            return self.server_version

        timeout = socket_timeout  # a slow or silent sender cannot hold a thread for ever

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            receiver.handle(self)

        def _not_allowed(self) -> None:
            receiver._reply(self, 405, None, "only POST", close=True, extra={"Allow": "POST"})

        do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        refused = staticmethod(receiver.count)
        _slots = threading.BoundedSemaphore(max_connections)

    httpd = Server((addr, port), Handler)
    if certfile and keyfile:
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            if client_cafile:
                ctx.load_verify_locations(client_cafile)
                ctx.verify_mode = ssl.CERT_REQUIRED if client_auth_required else ssl.CERT_OPTIONAL
            # The handshake happens in the request's thread, not in the accepting one.
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            httpd.server_close()
            raise
    thread = threading.Thread(target=httpd.serve_forever, name="agent-exporter-ingest", daemon=True)
    thread.start()
    return httpd, thread
