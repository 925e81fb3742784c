"""Acceptance: hostile input against `agent-exporter ingest` as a process.

1M spans in one trace, 100k traces left open, a flood at 10x the service's capacity: it stays
up, answers with the right codes, its memory (peak RSS from /proc) stays under the budget its
defaults imply, and its counters say what was not derived.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp_build import execution, new_span_id, new_trace_id, post, request, span
from tests.servers import OtlpReceiver

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
