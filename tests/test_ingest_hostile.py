"""Acceptance: hostile input against `agent-exporter ingest` as a process.

1M spans in one trace, 100k traces left open, a flood at 10x the service's capacity, senders
that trickle their requests a byte at a time: it stays up, answers with the right codes, its
memory (peak RSS from /proc) stays under the budget its defaults imply, and its counters say
what was not derived.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp_build import execution, new_span_id, new_trace_id, post, request, span
from tests.servers import OtlpReceiver, wait_until

# Peak RSS allowed for the service process. The defaults bound what it holds: 200,000 span
# summaries (~60 MB), 4 bodies of 4 MiB being decoded (x3 with their decoded form), a 64 MiB
# forward queue; plus the interpreter and libraries (~60 MB).
MEMORY_BUDGET_MB = 400


class Service:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "ingest", "--port", "0", "--metrics-port", "0", *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "OTLP on" in line, line
        self.port = int(line.split("127.0.0.1:")[1].split("/")[0])
        self.metrics_port = int(line.split("/metrics on 127.0.0.1:")[1].split(",")[0])

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None and post(self.port, request(execution()).SerializeToString())[0] == 200

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        finally:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def service() -> Iterator[type[Service]]:
    made: list[Service] = []

    class Made(Service):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            made.append(self)

    yield Made
    for s in made:
        s.stop()


@pytest.mark.slow
def test_a_million_spans_in_one_trace(service: type[Service]) -> None:
    """1M spans of one trace: 5,000 held, the rest counted trace_over_budget, memory bounded."""
    svc = service()
    tid, root = new_trace_id(), new_span_id()
    body = request([span(tid, "chat", {"gen_ai.operation.name": "chat"}, parent=root) for _ in range(10_000)])
    wire = body.SerializeToString()
    for _ in range(100):
        assert post(svc.port, wire)[0] == 200
    assert svc.value("agent_ingest_spans_received_total") == 1_000_000
    assert svc.value("agent_ingest_held_spans") == 5_000
    assert svc.value("agent_ingest_spans_not_derived_total", reason="trace_over_budget") == 995_000
    assert svc.alive()
    assert svc.peak_rss_mb() < MEMORY_BUDGET_MB


def test_a_hundred_thousand_open_traces(service: type[Service]) -> None:
    """100k traces whose roots never come: 20,000 held, 80,000 counted traces_over_budget."""
    svc = service()
    for _ in range(10):
        spans = [span(new_trace_id(), "chat", {"gen_ai.operation.name": "chat"}, parent=b"\x01" * 8)
                 for _ in range(10_000)]  # fmt: skip
        assert post(svc.port, request(spans).SerializeToString())[0] == 200
    assert svc.value("agent_ingest_open_traces") == 20_000
    assert svc.value("agent_ingest_spans_not_derived_total", reason="traces_over_budget") == 80_000
    assert svc.alive()
    assert svc.peak_rss_mb() < MEMORY_BUDGET_MB


def test_a_flood_at_ten_times_capacity(service: type[Service], otlp_receiver: OtlpReceiver) -> None:
    """20 senders against 2 decoding slots and a stuck next hop: only 200, 429 and 503, counted as answered."""
    otlp_receiver.set_mode("hang", seconds=60)
    svc = service(
        "--max-concurrent", "2", "--max-queue-bytes", "200000", "--max-body-bytes", "200000",
        "--forward", otlp_receiver.endpoint,
    )  # fmt: skip
    seen: Counter[int] = Counter()
    lock = threading.Lock()
    bodies = [request(execution(steps=6)).SerializeToString() for _ in range(20)]

    def sender(body: bytes) -> None:
        for _ in range(40):
            code = post(svc.port, body)[0]
            with lock:
                seen[code] += 1

    threads = [threading.Thread(target=sender, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) <= {200, 429, 503}
    assert seen[503] > 0 and seen[200] > 0
    for code, n in seen.items():
        assert svc.value("agent_ingest_requests_total", code=str(code)) == n
    assert svc.value("agent_ingest_forward_queue_bytes") <= 200_000
    otlp_receiver.set_mode("ok")
    assert svc.peak_rss_mb() < MEMORY_BUDGET_MB


class Trickler:
    """A sender that announces a body (Content-Length) and sends it a byte every `interval` seconds
    (or its headers that way, with `headers=True`) until the service answers or closes."""

    def __init__(self, port: int, *, length: int = 1000, interval: float = 0.2, headers: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sent = 0
        self.answer = b""
        self.ended_at: float | None = None
        head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                + f"Content-Length: {length}\r\n\r\n".encode())  # fmt: skip
        if headers:
            self._bytes = head
        else:
            self.sock.sendall(head)
            self._bytes = b"\x0a" * length
        self._interval = interval
        self._stop = threading.Event()
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(self._interval)
        for i in range(len(self._bytes)):
            if self._stop.is_set():
                return
            try:
                self.sock.sendall(self._bytes[i : i + 1])
                self.sent += 1
                got = self.sock.recv(4096)  # the service answered, or closed (b"")
            except TimeoutError:
                continue  # nothing from the service yet: the next byte
            except OSError:
                got = b""
            self.answer, self.ended_at = got, time.monotonic()
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_trickling_senders_do_not_starve_a_good_one(service: type[Service]) -> None:
    """Four senders trickling 1000-byte bodies a byte per 0.2 s: a good one is answered 200 within 2 s, counted once."""
    svc = service("--grace", "0.5")
    tricklers = [Trickler(svc.port) for _ in range(4)]  # as many as the default decoding slots
    try:
        wait_until(lambda: all(t.sent >= 3 for t in tricklers), timeout=10)
        started = time.monotonic()
        status, _, _ = post(svc.port, request(execution(steps=2)).SerializeToString(), timeout=2.0)
        took = time.monotonic() - started
        assert status == 200 and took < 2.0, (status, took)
        finished = {"agent": "billing", "trigger": "webhook", "status": "completed"}
        wait_until(lambda: svc.value("agent_executions_finished_total", **finished) == 1, timeout=10)
        assert svc.value("agent_executions_started_total", agent="billing", trigger="webhook") == 1
        assert svc.value("agent_tool_calls_total", agent="billing", tool="lookup", outcome="success") == 2
        assert svc.value("agent_ingest_spans_received_total") == 5
        assert svc.value("agent_ingest_requests_total", code="200") == 1
        assert svc.value("agent_ingest_requests_total", code="429") == 0
        assert all(t.ended_at is None for t in tricklers)  # still trickling: they were not refused
    finally:
        for t in tricklers:
            t.stop()


@pytest.mark.parametrize("part", ["body", "headers"])
def test_a_trickler_is_cut_off_at_the_request_deadline(service: type[Service], part: str) -> None:
    """A request whose body (or headers) trickles in is answered 408 and closed at --request-timeout, and counted."""
    svc = service("--request-timeout", "1")
    t = Trickler(svc.port, headers=part == "headers")
    try:
        wait_until(lambda: t.ended_at is not None, timeout=10)
        assert t.ended_at is not None
        took = t.ended_at - t.started_at
        assert t.answer.startswith(b"HTTP/1.1 408 "), t.answer
        assert b"Connection: close" in t.answer
        assert 0.9 <= took < 2.0, took
        assert t.sent < 10  # about 1 s of a byte per 0.2 s, not the whole request
    finally:
        t.stop()
    assert svc.value("agent_ingest_requests_total", code="408") == 1
    assert svc.alive()
