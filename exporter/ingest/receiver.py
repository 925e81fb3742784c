"""The OTLP/HTTP receiver: `POST /v1/traces`, answered as the OTLP specification asks.

A request is either accepted whole (its spans derived and queued for the next hop) or refused
with no effect, so a sender's retry never counts an execution twice:

- 401 without the bearer token (when one is set), 404 another path, 405 another method,
  415 a content type other than protobuf / JSON (or an unknown Content-Encoding), 411 neither
  Content-Length nor chunked; these are answered without decoding the body (discarded unread in
  64 KiB pieces up to DRAIN_LIMIT; past it, or chunked, the connection is closed);
- 408 (and the connection closed) when the request, headers and body, has not arrived within
  `request_timeout` seconds of its first byte (of the connection's start, for its first request);
- 413 a body (or what its gzip inflates to) over `max_body_bytes`;
- 400 a body that does not decode (truncated or garbage protobuf, bad JSON, bad gzip);
- 503 with `Retry-After` when `max_pending_bytes` of bodies are already held (being read or
  decoded), or when the forward queue is full;
- 429 with `Retry-After` when a body, read whole, finds the `max_concurrent` decoding slots busy
  for DECODE_WAIT seconds;
- 200 with `partial_success` when spans with invalid ids were rejected (not derived, not
  forwarded), spans came back in a forwarding loop (the same), or spans were not derived (over a
  budget, late: a warning, `rejected_spans` 0).

A body is read whole before a decoding slot is taken, so a slow sender holds its connection's
thread and the bytes it announced, never a slot that decoding needs; every read is bounded by
the socket timeout and the request's deadline.

Memory: at most `max_pending_bytes` of bodies are held at once (being read, waiting or being
decoded; a Content-Length body's bytes are reserved before it is read, a chunked body's chunk by
chunk), `max_concurrent` of them decoded at once (twice their size with gzip), and bodies are
read in chunks up to the limit (chunked bodies, which the Node.js exporter sends without
Content-Length, included).
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import io
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import IO, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .otlp import (
    BadRequest,
    TooLarge,
    error_body,
    for_next_hop,
    inflate,
    media_type,
    parse,
    response,
    summaries,
)

log = logging.getLogger("agent_exporter.ingest")

PATH = "/v1/traces"
RETRY_AFTER = "1"  # seconds; the OTel SDKs back off further on their own
DRAIN_LIMIT = 64 * 1024 * 1024  # an unwanted body up to this size is read and discarded, not reset
DECODE_WAIT = 1.0  # seconds a body read whole waits for a decoding slot (decoding takes milliseconds)
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds for a whole request, headers and body (408 past it)
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024  # bodies held at once: 8 of the default 4 MiB largest


class RequestTimeout(TimeoutError):
    """The request, headers and body, did not arrive within its deadline: 408, connection closed."""


class Outcome:
    """What one accepted request did, for the service's counters."""

    __slots__ = ("spans", "rejected", "not_derived", "looped")

    def __init__(self, spans: int, rejected: int, not_derived: dict[str, int], looped: int = 0) -> None:
        self.spans, self.rejected, self.not_derived, self.looped = spans, rejected, not_derived, looped


class _Budget:
    """Bytes held at once, shared by the requests in progress: `take` refuses past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


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
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        instance: str | None = None,
    ) -> None:
        if max_body_bytes < 1 or max_concurrent < 1:
            raise ValueError("max_body_bytes and max_concurrent must be >= 1")
        if max_pending_bytes < max_body_bytes:
            raise ValueError("max_pending_bytes must be >= max_body_bytes")
        self._add = add
        self._offer = offer
        self._counted = counted
        self._token = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._pending = _Budget(max_pending_bytes)
        # This service's id on what it forwards (otlp.VIA): spans that come back with it are a loop.
        self.instance = instance or uuid.uuid4().hex

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """Answer one request (never raises: the server thread must survive anything)."""
        try:
            self._handle(h)
        except RequestTimeout:
            raise  # the server's handler answers 408 and closes
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
        held = [0]  # bytes this request holds in the pending budget

        def reserve(n: int) -> bool:
            if not self._pending.take(n):
                return False
            held[0] += n
            return True

        try:
            if length is not None and not reserve(length):
                return self._refuse(h, 503, kind, _BUSY_MESSAGE, length, {"Retry-After": RETRY_AFTER})
            self._accept(h, kind, encoding, length, reserve)
        finally:
            self._pending.give(held[0])

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

    def _accept(
        self,
        h: http.server.BaseHTTPRequestHandler,
        kind: str,
        encoding: str,
        length: int | None,
        reserve: Callable[[int], bool],
    ) -> None:
        limit = self.max_body_bytes
        try:
            rfile: Any = h.rfile
            body = read_chunked(rfile, limit, reserve) if length is None else read_exact(rfile, length)
        except _ChunkedTooLarge as exc:
            # Read the rest away (up to DRAIN_LIMIT) so the sender sees the answer, not a reset.
            drained = drain_chunked(rfile, exc.pending, DRAIN_LIMIT)
            if isinstance(exc, _ChunkedBusy):
                return self._reply(h, 503, kind, str(exc), close=not drained, extra={"Retry-After": RETRY_AFTER})
            return self._reply(h, 413, kind, str(exc), close=not drained)
        except TooLarge as exc:
            return self._reply(h, 413, kind, str(exc), close=True)
        except BadRequest as exc:
            return self._reply(h, 400, kind, str(exc), close=True)
        # The body is here: only now is a decoding slot taken (a slow sender never holds one).
        if not self.slot():
            return self._reply(h, 429, kind, "too many requests being decoded", extra={"Retry-After": RETRY_AFTER})
        try:
            self._decode(h, kind, encoding, body)
        finally:
            self.release()

    def _decode(self, h: http.server.BaseHTTPRequestHandler, kind: str, encoding: str, body: bytes) -> None:
        try:
            if encoding == "gzip":
                body = inflate(body, self.max_body_bytes)
            request = parse(body, kind)
        except TooLarge as exc:
            return self._reply(h, 413, kind, str(exc))
        except BadRequest as exc:
            return self._reply(h, 400, kind, str(exc))
        accepted = self.take(request)
        if accepted is None:
            return self._reply(h, 503, kind, "forward queue full", extra={"Retry-After": RETRY_AFTER}, counted=True)
        rejected, message = accepted
        self._send(h, 200, response(kind, rejected, message), kind, False, {})

    def slot(self) -> bool:
        """Take a decoding slot, waiting up to DECODE_WAIT; False when they stay busy (429)."""
        return self._slots.acquire(timeout=DECODE_WAIT)

    def release(self) -> None:
        """Give back a slot `slot()` took."""
        self._slots.release()

    def count(self, code: int) -> None:
        """Count an answer given without `take` (the gRPC front's refusals)."""
        self._counted(code, None)

    def take(self, request: ExportTraceServiceRequest) -> tuple[int, str] | None:
        """Derive and forward a decoded request (HTTP or gRPC): (rejected spans, message for the
        partial success), or None when the forward queue is full (then nothing was done).

        What is forwarded is the request minus spans with invalid ids and spans that came back
        to this service (a loop), each resource marked with this service's id (`otlp.VIA`)."""
        decoded = summaries(request, self.instance)
        valid = decoded.spans - decoded.rejected - decoded.looped
        if self._offer is not None and valid:
            wire = for_next_hop(request, self.instance).SerializeToString()
            if not self._offer(wire, valid):
                self._counted(503, None)
                return None
        not_derived = self._add(decoded.traces)
        rejected = decoded.rejected + decoded.looped
        problems = []
        if decoded.rejected:
            problems.append(f"{decoded.rejected} spans with invalid trace or span ids rejected")
        if decoded.looped:
            problems.append(f"{decoded.looped} spans rejected: this service forwarded them before (a forwarding loop)")
        message = "; ".join(problems)
        if not message and not_derived:
            message = "spans accepted; not derived into metrics: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(not_derived.items())
            )
        outcome = Outcome(decoded.spans, decoded.rejected, not_derived, decoded.looped)
        self._counted(200, outcome)  # before the answer is sent
        return rejected, message

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


def read_chunked(rfile: IO[bytes], limit: int, reserve: Callable[[int], bool] = lambda n: True) -> bytes:
    """A chunked body (RFC 9112 §7.1), refusing more than `limit` bytes of data, and a chunk
    `reserve` refuses (the bytes held at once are over their budget)."""
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
        if not reserve(size):
            raise _ChunkedBusy(_BUSY_MESSAGE, pending=size)
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


class _ChunkedBusy(_ChunkedTooLarge):
    """A chunk over the budget of bytes held at once: the answer is 503 (retry later)."""


_BUSY_MESSAGE = "too many request bodies held at once"


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


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each bounded by the idle timeout and by the current request's
    deadline: past it, `RequestTimeout`, however slowly the bytes keep coming (the socket
    timeout alone bounds one read, not a request)."""

    def __init__(self, sock: socket.socket, idle: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle = idle
        self.deadline: float | None = None  # monotonic; None between requests
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any, /) -> int:
        timeout = self._idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.expired = True
                raise RequestTimeout("request not received in time")
            timeout = min(timeout, left)
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            if timeout < self._idle:  # the deadline, not the idle timeout, ran out
                self.expired = True
                raise RequestTimeout("request not received in time") from None
            raise
        finally:
            self._sock.settimeout(self._idle)


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
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """Bind and serve on a daemon thread; TLS (and mutual TLS) as for `/metrics`. Raises OSError.

    `socket_timeout` bounds each read and the wait for a connection's next request (keep-alive);
    `request_timeout` bounds a whole request, headers and body, from its first byte (from the
    connection's start for its first request, the TLS handshake included): 408 and closed past it."""
    if request_timeout <= 0 or socket_timeout <= 0:
        raise ValueError("request_timeout and socket_timeout must be > 0")
    timed_out, _ = error_body(None, 408, f"request not received within {request_timeout:g} s")
    timed_out_answer = (
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/x-protobuf\r\nConnection: close\r\n"
        + f"Content-Length: {len(timed_out)}\r\n\r\n".encode()
        + timed_out
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: OTLP exporters reuse their connection
        server_version = "agent-exporter-ingest"
        _reader: _DeadlineReader
        _buffered: io.BufferedReader

        def version_string(self) -> str:
            return self.server_version

        timeout = socket_timeout  # a slow or silent sender cannot hold a thread for ever

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the socket's own file: replaced by one whose reads have a deadline
            self._reader = _DeadlineReader(self.connection, socket_timeout)
            self._reader.deadline = time.monotonic() + request_timeout  # the first request: from now
            self.rfile = self._buffered = io.BufferedReader(self._reader, 65536)

        def handle_one_request(self) -> None:
            reader = self._reader
            if reader.deadline is None:
                # Keep-alive: wait for the next request with the idle timeout; its deadline
                # starts with its first byte.
                try:
                    if not self._buffered.peek(1):
                        self.close_connection = True
                        return
                except OSError:
                    self.close_connection = True
                    return
                reader.deadline = time.monotonic() + request_timeout
            try:
                super().handle_one_request()  # a TimeoutError closes the connection, unanswered
            finally:
                reader.deadline = None
            if reader.expired:
                reader.expired = False
                self.close_connection = True
                receiver.count(408)
                with contextlib.suppress(OSError):
                    self.connection.settimeout(1.0)
                    self.connection.sendall(timed_out_answer)

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
