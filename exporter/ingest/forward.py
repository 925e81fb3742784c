"""Forwarding to the next hop: every accepted request's spans, unchanged, to an OTLP/HTTP endpoint.

The receiver never waits on the next hop: `offer()` puts the (protobuf) body on a queue bounded
in bytes and returns at once; False means full, and the receiver then answers 503 with
`Retry-After` so the sender keeps the spans (and the request has no effect here either, so an
execution is still counted once). Worker threads post with a timeout and retry what the OTLP
spec calls retryable (connection errors, 429, 502, 503, 504, honouring `Retry-After` up to a cap)
with exponential back-off; what still fails is dropped and counted.
"""

from __future__ import annotations

import collections
import http.client
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

log = logging.getLogger("agent_exporter.ingest")

DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 5
MAX_BACKOFF = 10.0  # seconds; also the cap on a next hop's Retry-After
RETRYABLE = frozenset({429, 502, 503, 504})

# Outcomes (label values of agent_ingest_forward_spans_total).
SENT = "sent"
FAILED = "failed"  # retries exhausted, or a non-retryable answer
SHUTDOWN = "shutdown"  # still queued when the service stopped


class Forwarder:
    """A bounded queue of OTLP/HTTP protobuf bodies and the threads that post them."""

    def __init__(
        self,
        url: str,
        *,
        count: Callable[[str, int], None],
        headers: Mapping[str, str] | None = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        workers: int = 2,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"forward URL must be http(s)://host[:port]/path, got {url!r}")
        if max_queue_bytes < 1 or max_attempts < 1 or workers < 1 or timeout <= 0:
            raise ValueError("max_queue_bytes, max_attempts, workers and timeout must be positive")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/v1/traces") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        self._count = count
        self.max_queue_bytes = max_queue_bytes
        self._timeout = timeout
        self._attempts = max_attempts
        self._queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self.queued_bytes = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"agent-exporter-forward-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def offer(self, body: bytes, spans: int) -> bool:
        """Queue a body for the next hop; False (nothing queued) when the queue is full or stopped."""
        with self._cond:
            if self._stop.is_set() or self.queued_bytes + len(body) > self.max_queue_bytes:
                return False
            self._queue.append((body, spans))
            self.queued_bytes += len(body)
            self._cond.notify()
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued for up to `timeout` seconds, then stop; the rest is counted `shutdown`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._stop.set()
            left = sum(n for _, n in self._queue)
            self._queue.clear()
            self.queued_bytes = 0
            self._cond.notify_all()
        if left:
            self._count(SHUTDOWN, left)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()) + 0.1)

    # ------------------------------------------------------------------ workers

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    break
                body, spans = self._queue.popleft()
                self.queued_bytes -= len(body)
                self._busy += 1
            try:
                conn = self._deliver(conn, body, spans)
            except Exception:  # noqa: BLE001 - a bug here must not stop forwarding
                log.exception("forwarding failed")
                self._count(FAILED, spans)
                conn = None
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
        if conn is not None:
            conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _deliver(
        self, conn: http.client.HTTPConnection | None, body: bytes, spans: int
    ) -> http.client.HTTPConnection | None:
        delay = 0.5
        for attempt in range(1, self._attempts + 1):
            status, retry_after = None, None
            try:
                conn = conn or self._connect()
                conn.request("POST", self._path, body, self._headers)
                resp = conn.getresponse()
                resp.read()
                status, retry_after = resp.status, resp.getheader("Retry-After")
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                problem = repr(exc)
            else:
                if 200 <= status < 300:
                    self._count(SENT, spans)
                    return conn
                problem = f"HTTP {status}"
                if status not in RETRYABLE:
                    break
            if attempt == self._attempts or self._stop.is_set():
                break
            wait = _retry_after(retry_after) if retry_after else None
            if self._sleep(min(MAX_BACKOFF, wait if wait is not None else delay)):
                break  # stopping
            delay *= 2
        log.warning("dropped %d spans the next hop (%s) did not take: %s", spans, self.url, problem)
        self._count(FAILED, spans)
        return conn


def _retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
