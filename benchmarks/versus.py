"""Per-execution CPU of this checkout against another one, side by side in one run.

    git worktree add /tmp/base <commit>
    python -m benchmarks.versus --baseline /tmp/base [--rounds 6] [--executions 3000]
    python -m benchmarks.versus --baseline /tmp/base --instructions   # under valgrind: repeatable

Each round runs the same 6-step execution shape in a fresh process per checkout (interleaved, so
drift on a shared machine hits both), exporting to a local OTLP sink, and reads the agent
thread's CPU per execution and the process's CPU per execution with the spans flushed. Prints the
medians and the ratio this / baseline; nothing is asserted (a benchmark, not a test).

On a shared machine seconds are noisy; `--instructions` counts the instructions the whole process
executes per execution (valgrind's callgrind, the difference between a run of 100 and one of 400
executions, so start-up and import cancel out): the same figure run after run, whatever else the
machine is doing.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import exporter
    n, endpoint = int(sys.argv[1]), sys.argv[2]
    exporter.configure(service_name="versus", metrics_port=None, otlp_endpoint=endpoint, log_level="off")

    def one(i):
        with exporter.execution("invoice", trigger="email", task_id=f"T-{i}") as run:
            for name in ("Extract", "Validate", "Route", "Approve", "Update CRM", "Notify"):
                with run.step(name, tool="custom_gpt") as step:
                    with step.tool_call("custom_gpt"):
                        pass
                    step.record_usage(input_tokens=100, output_tokens=20)
                    step.evaluate("accuracy", score=0.9)

    for i in range(int(sys.argv[3]) if len(sys.argv) > 3 else 300):
        one(i)
    exporter.flush(30)
    t0, p0 = time.thread_time(), time.process_time()
    for i in range(n):
        one(i)
    t1 = time.thread_time()
    ok = exporter.flush(30)
    p1 = time.process_time()
    print(json.dumps({"thread_us": (t1 - t0) / n * 1e6, "process_us": (p1 - p0) / n * 1e6, "flushed": ok}))
    """
)


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _run(checkout: Path, n: int, endpoint: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(n), endpoint],
        capture_output=True, text=True, env=env, cwd=checkout, check=True, timeout=600,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _instructions(checkout: Path, n: int, endpoint: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", WORKER, str(n),
         endpoint, "20"],
        capture_output=True, text=True, env=env, cwd=checkout, check=True, timeout=1800,
    )  # fmt: skip
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"no instruction count in valgrind's output: {out.stderr[-500:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", type=Path, required=True, help="another checkout of the project")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--executions", type=int, default=3000)
    p.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead")
    a = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    if a.instructions:
        per: dict[str, float] = {}
        for name, checkout in (("baseline", a.baseline), ("this", REPO)):
            small, large = _instructions(checkout, 100, endpoint), _instructions(checkout, 400, endpoint)
            per[name] = (large - small) / 300
            print(f"{name:10} {per[name]:14,.0f} instructions per execution (process, spans exported)")
        print(f"{'ratio':10} {per['this'] / per['baseline']:13.3f}x")
        server.shutdown()
        return
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
    for r in range(a.rounds):
        order = [("baseline", a.baseline), ("this", REPO)]
        for name, checkout in order if r % 2 == 0 else reversed(order):
            results[name].append(_run(checkout, a.executions, endpoint))
    server.shutdown()
    print(f"{a.executions} executions x {a.rounds} rounds, 6 steps each, spans exported to a local sink")
    print(f"{'':10} {'agent thread µs/exec':>22} {'process CPU µs/exec':>22}   (median; min: the least disturbed)")
    med: dict[str, tuple[float, float, float, float]] = {}
    for name, rows in results.items():
        t = statistics.median(x["thread_us"] for x in rows)
        pr = statistics.median(x["process_us"] for x in rows)
        tmin, pmin = min(x["thread_us"] for x in rows), min(x["process_us"] for x in rows)
        med[name] = (t, pr, tmin, pmin)
        print(f"{name:10} {t:22.1f} {pr:22.1f}   min {tmin:.1f} / {pmin:.1f}")
    b, t_ = med["baseline"], med["this"]
    print(f"{'ratio':10} {t_[0] / b[0]:21.3f}x {t_[1] / b[1]:21.3f}x   min {t_[2] / b[2]:.3f}x / {t_[3] / b[3]:.3f}x")


if __name__ == "__main__":
    main()
