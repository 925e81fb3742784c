"""`python3 -m benchmarks.ingest`: spans/s that `agent-exporter ingest` derives and forwards per core.

The service runs as its own process, forwarding to a sink in this process that answers 200 at
once. Requests of the 6-step shape (benchmarks/shape.py: an `invoke_agent` root, six `chat`
steps with usage and an evaluation event, six `execute_tool` calls: 13 spans) are built and
serialised before the clock starts, ~40 executions (520 spans) per request as a batching SDK
sends them, posted over one keep-alive connection per sender thread. The figure is spans
received divided by the service's CPU seconds (user + system, from /proc) until every execution
is counted and every span forwarded; so it is per core whatever the machine's other load.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import shape
from tests.otlp_build import T0, new_span_id, new_trace_id, request, span

SPANS_PER_EXECUTION = 1 + 2 * len(shape.STEPS)


def execution_spans() -> list[object]:
    tid, root = new_trace_id(), new_span_id()
    out: list[object] = []
    for i, (step, tool) in enumerate(shape.STEPS):
        chat = new_span_id()
        ev = ("gen_ai.evaluation.result", {"gen_ai.evaluation.name": shape.EVALUATION,
                                           "gen_ai.evaluation.score.value": shape.SCORE})  # fmt: skip
        out.append(span(tid, step, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                    "gen_ai.usage.input_tokens": shape.TOKENS_IN,
                                    "gen_ai.usage.output_tokens": shape.TOKENS_OUT},
                        parent=root, span_id=chat, events=[ev], start=T0 + i * 10**8, seconds=0.05))  # fmt: skip
        tool_attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
        out.append(span(tid, f"execute_tool {tool}", tool_attrs, parent=root, seconds=0.01))
    out.append(span(tid, f"invoke_agent {shape.AGENT}", {"gen_ai.operation.name": "invoke_agent",
                                                          "gen_ai.agent.name": shape.AGENT,
                                                          "task.trigger": shape.TRIGGER, "task.id": tid.hex()},
                    span_id=root, seconds=1.0))  # fmt: skip
    return out


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else "")
            out[key] = s.value
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--executions", type=int, default=20_000)
    p.add_argument("--per-request", type=int, default=40)
    p.add_argument("--senders", type=int, default=2)
    args = p.parse_args()

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print(f"building {args.executions} executions ...", file=sys.stderr)
    bodies = []
    for _ in range(0, args.executions, args.per_request):
        spans = [s for _ in range(args.per_request) for s in execution_spans()]
        bodies.append(request(spans).SerializeToString())  # type: ignore[arg-type]
    total_spans = len(bodies) * args.per_request * SPANS_PER_EXECUTION
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "ingest", "--port", "0", "--metrics-port", "0", "--grace", "0",
         "--forward", f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    port = int(line.split("127.0.0.1:")[1].split("/")[0])
    metrics_port = int(line.split("/metrics on 127.0.0.1:")[1].split(",")[0])
    try:
        cpu0, t0 = _cpu(proc.pid), time.perf_counter()
        codes: list[int] = []

        def sender(mine: list[bytes]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for body in mine:
                while True:
                    conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    resp = conn.getresponse()
                    resp.read()
                    codes.append(resp.status)
                    if resp.status == 200:
                        break
                    time.sleep(0.05)
            conn.close()

        threads = [threading.Thread(target=sender, args=(bodies[i :: args.senders],)) for i in range(args.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        key_done = f"agent_executions_finished_total{{agent={shape.AGENT},status=completed,trigger={shape.TRIGGER}}}"
        while True:
            m = _metrics(metrics_port)
            if (
                m.get(key_done, 0) >= len(bodies) * args.per_request
                and m.get("agent_ingest_forward_spans_total{outcome=sent}", 0) >= total_spans
            ):
                break
            time.sleep(0.2)
        wall, cpu = time.perf_counter() - t0, _cpu(proc.pid) - cpu0
        hwm = next(x for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
        print(f"spans: {total_spans} in {len(bodies)} requests ({len(bodies[0]) // 1024} KiB each); "
              f"answers: {sorted(set(codes))} ({len(codes)})")  # fmt: skip
        print(f"executions counted: {m.get(key_done):.0f}; steps: "
              f"{sum(v for k, v in m.items() if k.startswith('agent_steps_total')):.0f}; "
              f"forwarded: {m.get('agent_ingest_forward_spans_total{outcome=sent}'):.0f}")  # fmt: skip
        print(f"service CPU {cpu:.2f} s, wall {wall:.2f} s -> {total_spans / cpu:,.0f} spans/s per core "
              f"({total_spans / wall:,.0f} spans/s wall); peak {hwm.split(':')[1].strip()}")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sink.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
