"""Real-server test harness: Prometheus, Alertmanager and local HTTP/OTLP receivers.

Why: unit tests prove our exposition and spans are well formed; only real servers prove that
Prometheus scrapes them (exemplars included), that our rules fire and that Alertmanager delivers
a Slack message. Everything binds to 127.0.0.1, every wait has a deadline, and every process is
stopped (its whole process group) even when the test fails.

Load the fixtures with ``pytest_plugins = ["tests.servers"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import http.server
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Self, TypeVar

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "AlertmanagerServer",
    "HttpReceiver",
    "OtlpReceiver",
    "PrometheusServer",
    "ReceivedEvent",
    "ReceivedSpan",
    "RecordedRequest",
    "ServerError",
    "alertmanager_factory",
    "decode_spans",
    "free_port",
    "missing",
    "otlp_receiver",
    "prometheus_factory",
    "require_binary",
    "slack_receiver",
    "track",
    "wait_until",
]

T = TypeVar("T")

INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not start, exited, or its API answered with an error."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def require_binary(name: str, *alternatives: str) -> str:
    """Path of a binary; a missing one fails under CI (must not go unnoticed) and skips locally."""
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path:
            return path
    missing(f"{name} not installed: {INSTALL_HINT} (or put {name} on PATH)")


def missing(reason: str) -> NoReturn:
    """Something a test needs is not installed: fail under CI (must not go unnoticed), skip locally."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it, so parallel runs don't collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def wait_until(
    fn: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``fn`` until it returns something truthy; TimeoutError names the last value or error.

    Why: servers come up and scrape on their own schedule, so tests poll with a deadline
    instead of sleeping a guessed amount. Exceptions from ``fn`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - "not ready yet" is reported at the deadline
            last = exc
        if time.monotonic() >= deadline:
            extra = f"\n{describe()}" if describe else ""
            raise TimeoutError(f"condition not met within {timeout:.1f}s; last value: {last!r}{extra}")
        time.sleep(interval)


def _http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One HTTP exchange with urllib; HTTP error statuses are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


# Every child process still running, so an interpreter exit (Ctrl-C, crash) does not leak them.
_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (SIGTERM) to the process group, wait ``grace`` seconds, then SIGKILL it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    with _LIVE_LOCK:
        _LIVE_PROCESSES.discard(proc)


def track(proc: subprocess.Popen[bytes]) -> None:
    """Stop `proc`'s process group when the interpreter exits, if nothing stopped it before."""
    with _LIVE_LOCK:
        _LIVE_PROCESSES.add(proc)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE_PROCESSES)
    for proc in leftovers:
        _kill_group(proc, grace=1.0)


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


class _ServerProcess:
    """A binary run in its own process group, logging to a file, ready when /-/ready says 200."""

    name = "server"
    startup_timeout = 30.0
    stop_grace = 5.0

    def __init__(self, binary: str, workdir: Path, port: int | None) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # subclasses give the command line
    def _args(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:9090 (no trailing slash)."""
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def address(self) -> str:
        """host:port, the form Prometheus wants for scrape and alertmanager targets."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, to put in failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def start(self) -> Self:
        """Start the process; retries on a new port once if another process grabbed ours."""
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready()
                return self
            except ServerError:
                self.stop()
                busy = "address already in use" in self.log_tail(400).lower()
                if not busy or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, *self._args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: stop() kills it all
            )
        track(self._proc)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ServerError(f"{self.name} exited with code {code} during start\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = _http("GET", f"{self.url}/-/ready", timeout=1.0)
                if status == 200:
                    return
            time.sleep(0.1)
        raise ServerError(
            f"{self.name} not ready on {self.url} after {self.startup_timeout:.0f}s\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the process group, wait up to ``stop_grace`` seconds, then kill it."""
        if self._proc is not None:
            _kill_group(self._proc, self.stop_grace)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait_for(self, fn: Callable[[], T], timeout: float, interval: float = 0.5) -> T:
        """Poll ``fn`` until truthy; the TimeoutError carries the last value and the log tail."""
        return wait_until(fn, timeout, interval, describe=self.log_tail)

    def _get_json(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = _http("GET", f"{self.url}{path}{query}")
        return self._decode(path, status, body)

    def _decode(self, path: str, status: int, body: bytes) -> Any:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if status >= 400:
            raise ServerError(f"{self.name} {path} answered {status}: {body[:2000]!r}")
        return payload


class PrometheusServer(_ServerProcess):
    """A real Prometheus with exemplar storage, scraping what the test's config says.

    ``config`` is the prometheus.yml content as a dict (``global``, ``scrape_configs``, ...);
    ``rule_files`` and ``alerting`` are filled in from the other arguments.
    """

    name = "prometheus"

    def __init__(
        self,
        config: Mapping[str, Any],
        tmp_path: Path,
        rule_files: Sequence[str | os.PathLike[str]] = (),
        alertmanager: str | None = None,
        *,
        binary: str = "/usr/bin/prometheus",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(binary, tmp_path, port)
        self.extra_args = list(extra_args)
        cfg: dict[str, Any] = json.loads(json.dumps(dict(config)))  # deep copy, plain types
        if rule_files:
            # Absolute paths to the caller's files: errors then name the file the test author edits.
            cfg["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
        if alertmanager:
            target = alertmanager.removeprefix("http://")
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        self.config = cfg
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def _args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            f"--web.external-url=http://{self.address}",  # alert links name 127.0.0.1, not the host
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
            *self.extra_args,
        ]

    def _api(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        """GET /api/v1/<path>; raises ServerError with Prometheus's error text unless success."""
        payload = self._get_json_lenient(f"/api/v1/{path}", params)
        if not isinstance(payload, dict) or payload.get("status") != "success":
            error = payload.get("error") if isinstance(payload, dict) else payload
            kind = payload.get("errorType") if isinstance(payload, dict) else "?"
            raise ServerError(f"prometheus /api/v1/{path} {dict(params or {})}: {kind}: {error}")
        return payload["data"]

    def _get_json_lenient(self, path: str, params: Mapping[str, object] | None) -> Any:
        # Prometheus puts its error text in a JSON body with 4xx/5xx; keep it for the message.
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = _http("GET", f"{self.url}{path}{query}")
        try:
            return json.loads(body)
        except ValueError:
            raise ServerError(f"prometheus {path} answered {status}: {body[:2000]!r}") from None

    def query(self, expr: str, time: float | str | None = None) -> list[dict[str, Any]]:
        """Instant query; a vector's samples (scalars/strings come back as one sample)."""
        params: dict[str, object] = {"query": expr}
        if time is not None:
            params["time"] = time
        data = self._api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_value(self, expr: str) -> float | None:
        """The single sample's value of an instant query, None when empty; handy in wait_for."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise ServerError(f"{expr!r} returned {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def query_range(
        self, expr: str, start: float | str, end: float | str, step: float | str = 1.0
    ) -> list[dict[str, Any]]:
        """Range query; a matrix's series, each with ``values``."""
        data = self._api("query_range", {"query": expr, "start": start, "end": end, "step": step})
        return list(data["result"])

    def query_exemplars(self, expr: str, start: float | str, end: float | str) -> list[dict[str, Any]]:
        """Exemplars in [start, end]: a list of {"seriesLabels": ..., "exemplars": [...]}."""
        return list(self._api("query_exemplars", {"query": expr, "start": start, "end": end}))

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (with ``health`` and ``lastError``)."""
        return list(self._api("targets")["activeTargets"])

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts from /api/v1/alerts."""
        return list(self._api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups from /api/v1/rules (each with ``rules``, health and lastError)."""
        return list(self._api("rules")["groups"])

    def reload(self) -> None:
        """POST /-/reload after editing the config or rule files on disk."""
        status, body = _http("POST", f"{self.url}/-/reload", body=b"")
        if status != 200:
            raise ServerError(f"prometheus reload answered {status}: {body!r}\n{self.log_tail()}")


class AlertmanagerServer(_ServerProcess):
    """A real Alertmanager, clustering off, links pointing at its own 127.0.0.1 URL."""

    name = "alertmanager"

    def __init__(
        self,
        config: Mapping[str, Any] | str,
        tmp_path: Path,
        *,
        binary: str = "/usr/bin/prometheus-alertmanager",
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(binary, tmp_path, port)
        self.extra_args = list(extra_args)
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(text)

    def _args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
            f"--web.external-url={self.url}",
            *self.extra_args,
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds, from /api/v2/alerts."""
        return list(self._get_json("/api/v2/alerts"))

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts to /api/v2/alerts, as Prometheus would (labels, annotations, startsAt...)."""
        body = json.dumps(list(alerts)).encode()
        status, answer = _http(
            "POST", f"{self.url}/api/v2/alerts", body=body, headers={"Content-Type": "application/json"}
        )
        self._decode("/api/v2/alerts", status, answer)


# --------------------------------------------------------------------------------------------
# In-process HTTP receivers
# --------------------------------------------------------------------------------------------


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stuck client must not hold up shutdown


class _ReceiverBase:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread; context manager."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuietServer((LOCALHOST, port), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._started = False

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> Self:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Release any held ("hang") requests, stop serving and close the socket."""
        self._stopping.set()
        if self._started:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._started = False
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _BaseHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive thread outlives the test.
    protocol_version = "HTTP/1.0"
    timeout = 10  # socket timeout: a client that stops sending can't pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] = {}) -> None:  # noqa: B006
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@dataclass(frozen=True)
class RecordedRequest:
    """One POST an HttpReceiver saw."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None  # decoded body when it parsed as JSON, else None


class HttpReceiver(_ReceiverBase):
    """Records every POST and answers ``status`` (200 "ok"): a stand-in for Slack's webhook."""

    def __init__(self, port: int = 0, status: int = 200) -> None:
        self.status = status  # change at run time to test the sender's retries
        self._requests: list[RecordedRequest] = []
        super().__init__(port)

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(_BaseHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                body = self._read_body()
                try:
                    decoded = json.loads(body) if body else None
                except ValueError:
                    decoded = None
                record = RecordedRequest(self.path, dict(self.headers.items()), body, decoded)
                with receiver._lock:
                    receiver._requests.append(record)
                    status = receiver.status
                self._answer(status, b"ok" if status < 400 else b"error", "text/plain")

        return Handler

    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(
        self, predicate: Callable[[list[RecordedRequest]], Any], timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Poll until ``predicate(requests)`` is truthy; returns the requests at that moment."""
        result: list[RecordedRequest] = []

        def check() -> bool:
            nonlocal result
            result = self.requests()
            return bool(predicate(result))

        wait_until(check, timeout, describe=lambda: f"requests received: {self.requests()!r}")
        return result


# -- OTLP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event as decoded from OTLP."""

    name: str
    attributes: dict[str, Any]
    time_ns: int


@dataclass(frozen=True)
class ReceivedSpan:
    """A span as decoded from OTLP, ids as lowercase hex (as in logs and exemplars)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent] = field(default_factory=list)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)  # string/bool/int/double/bytes


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in pairs}


def decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Flatten an OTLP export request into ReceivedSpans."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=int(span.kind),
                        start_ns=int(span.start_time_unix_nano),
                        end_ns=int(span.end_time_unix_nano),
                        attributes=_attributes(span.attributes),
                        events=[
                            ReceivedEvent(e.name, _attributes(e.attributes), int(e.time_unix_nano))
                            for e in span.events
                        ],
                        status_code=int(span.status.code),
                        status_message=span.status.message,
                        resource_attributes=dict(resource),
                        scope_name=scope_spans.scope.name,
                    )
                )
    return spans


OtlpMode = Literal["ok", "status", "hang", "drop"]


class OtlpReceiver(_ReceiverBase):
    """An OTLP/HTTP trace endpoint that decodes spans, with fault modes switchable at run time.

    Modes (``set_mode``):
      - "ok": decode, store the spans, answer 200 with an empty ExportTraceServiceResponse;
      - "status": answer ``status`` (e.g. 500, or 429 with a ``Retry-After`` header), store nothing;
      - "hang": hold the request ``hang_seconds`` (released early by stop()), then answer as "ok";
      - "drop": read the request, then close the connection without answering.
    Only answered-200 requests store spans; ``counts`` says how many requests each mode took.
    """

    def __init__(self, port: int = 0) -> None:
        self.mode: OtlpMode = "ok"
        self.status = 500
        self.retry_after: str | None = None
        self.hang_seconds = 5.0
        self.counts: Counter[str] = Counter()
        self._spans: list[ReceivedSpan] = []
        self.bad_requests: list[str] = []  # decode errors, so a test can assert there were none
        super().__init__(port)

    @property
    def endpoint(self) -> str:
        """The OTLP traces URL to give an OTLPSpanExporter."""
        return f"{self.url}/v1/traces"

    def set_mode(
        self,
        mode: OtlpMode,
        *,
        status: int = 500,
        retry_after: str | int | None = None,
        seconds: float = 5.0,
    ) -> None:
        """Switch fault mode for the following requests (see the class docstring)."""
        if mode not in ("ok", "status", "hang", "drop"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "hang" and not 0 <= seconds <= 60:
            raise ValueError(f"hang seconds must be within 0..60, got {seconds}")
        with self._lock:
            self.mode = mode
            self.status = status
            self.retry_after = None if retry_after is None else str(retry_after)
            self.hang_seconds = seconds

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(_BaseHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                body = self._read_body()
                with receiver._lock:
                    mode, status = receiver.mode, receiver.status
                    retry_after, hang = receiver.retry_after, receiver.hang_seconds
                    receiver.counts[mode] += 1
                if mode == "drop":
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if mode == "status":
                    extra = {"Retry-After": retry_after} if retry_after is not None else {}
                    self._answer(status, b"", "application/x-protobuf", extra)
                    return
                if mode == "hang":
                    receiver._stopping.wait(hang)
                if self.path.split("?")[0] != "/v1/traces":
                    self._answer(404, b"not found", "text/plain")
                    return
                try:
                    if self.headers.get("Content-Encoding", "").lower() == "gzip":
                        body = gzip.decompress(body)
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    spans = decode_spans(request)
                except Exception as exc:  # noqa: BLE001 - reported to the client and kept
                    with receiver._lock:
                        receiver.bad_requests.append(repr(exc))
                    self._answer(400, repr(exc).encode(), "text/plain")
                    return
                with receiver._lock:
                    receiver._spans.extend(spans)
                payload = ExportTraceServiceResponse().SerializeToString()
                self._answer(200, payload, "application/x-protobuf")

        return Handler

    def spans(self) -> list[ReceivedSpan]:
        """A copy of the spans stored so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        """Forget stored spans, counters and decode errors (the mode stays)."""
        with self._lock:
            self._spans.clear()
            self.counts.clear()
            self.bad_requests.clear()

    def wait_for_spans(
        self, predicate: int | Callable[[list[ReceivedSpan]], Any], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Wait until at least ``predicate`` spans arrived, or ``predicate(spans)`` is truthy."""
        check: Callable[[list[ReceivedSpan]], Any]
        if isinstance(predicate, int):
            count = predicate
            check = lambda spans: len(spans) >= count  # noqa: E731
        else:
            check = predicate
        result: list[ReceivedSpan] = []

        def poll() -> bool:
            nonlocal result
            result = self.spans()
            return bool(check(result))

        wait_until(
            poll,
            timeout,
            interval=0.05,
            describe=lambda: f"spans: {[s.name for s in self.spans()]}, counts: {dict(self.counts)}",
        )
        return result


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------

_factory_ids = itertools.count()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Build-and-start PrometheusServers under tmp_path; all are stopped at teardown.

    Call as ``prometheus_factory(config, rule_files=(), alertmanager=None, **kwargs)``.
    """
    binary = require_binary("prometheus")
    servers: list[PrometheusServer] = []

    def make(
        config: Mapping[str, Any],
        rule_files: Sequence[str | os.PathLike[str]] = (),
        alertmanager: str | None = None,
        **kwargs: Any,
    ) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{next(_factory_ids)}"
        server = PrometheusServer(config, workdir, rule_files, alertmanager, binary=binary, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[Callable[..., AlertmanagerServer]]:
    """Build-and-start AlertmanagerServers under tmp_path; all are stopped at teardown.

    Call as ``alertmanager_factory(config_dict_or_yaml, **kwargs)``.
    """
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    servers: list[AlertmanagerServer] = []

    def make(config: Mapping[str, Any] | str, **kwargs: Any) -> AlertmanagerServer:
        workdir = tmp_path / f"alertmanager-{next(_factory_ids)}"
        server = AlertmanagerServer(config, workdir, binary=binary, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started OtlpReceiver in "ok" mode, stopped at teardown."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def slack_receiver() -> Iterator[HttpReceiver]:
    """A started HttpReceiver to use as a Slack webhook ``api_url``, stopped at teardown."""
    with HttpReceiver() as receiver:
        yield receiver
