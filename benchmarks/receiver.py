"""A lightweight OTLP/HTTP trace receiver, run as its own process so it takes no CPU from the
process being measured (and its memory is not counted in that process's RSS).

`python3 -m benchmarks.receiver --mode ok|hang [--hang-seconds S]` prints its port on the first
line of stdout. It decodes every request (`ExportTraceServiceRequest`, gunzipped if needed) and
counts spans; `GET /count` answers `{"spans": n, "requests": n, "bad": n, "traces": n,
"error_traces": n}` (distinct trace ids; those with a span whose status is ERROR). In `hang` mode each
export is held `--hang-seconds` before the answer (a backend that answers slowly).
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_EMPTY = ExportTraceServiceResponse().SerializeToString()


def _serve(mode: str, hang_seconds: float) -> None:
    lock = threading.Lock()
    counts = {"spans": 0, "requests": 0, "bad": 0, "traces": 0, "error_traces": 0}
    traces: set[bytes] = set()
    errors: set[bytes] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                body = json.dumps(counts).encode()
            self._answer(200, body, "application/json")

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if mode == "hang":
                time.sleep(hang_seconds)
            try:
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                spans = [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
                n = len(spans)
            except Exception:  # noqa: BLE001
                with lock:
                    counts["bad"] += 1
                self._answer(400, b"bad request", "text/plain")
                return
            with lock:
                counts["spans"] += n
                counts["requests"] += 1
                for sp in spans:
                    traces.add(sp.trace_id)
                    if sp.status.code == 2:  # STATUS_CODE_ERROR
                        errors.add(sp.trace_id)
                counts["traces"] = len(traces)
                counts["error_traces"] = len(errors)
            self._answer(200, _EMPTY, "application/x-protobuf")

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that gave up (export timeout) while we held its request: expected

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever(poll_interval=0.2)


class Receiver:
    """Parent-side handle: starts the receiver process, reads its count, stops it."""

    def __init__(self, mode: str = "ok", hang_seconds: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.receiver", "--mode", mode, "--hang-seconds", str(hang_seconds)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"OTLP receiver did not start: {line!r}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def count(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/count", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def wait_spans(self, n: int, timeout: float = 30.0) -> int:
        """Wait until at least n spans arrived (or the timeout); returns the count seen."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = self.count()["spans"]
            if seen >= n:
                break
            time.sleep(0.05)
        return seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("ok", "hang"), default="ok")
    p.add_argument("--hang-seconds", type=float, default=30.0)
    a = p.parse_args()
    _serve(a.mode, a.hang_seconds)
