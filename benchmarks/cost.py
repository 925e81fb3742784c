"""What pricing model usage costs (issue 24), side by side in one run.

    python -m benchmarks.cost [--rounds 6] [--calls 20000] [--executions 3000]
    python -m benchmarks.cost --instructions    # part 2 under valgrind: the same figure every run

1. `step.record_usage` per call: today's plain call (`record_usage(100, 20)`) against the same
   call with a model priced by genai-prices and a cache part (`model="gpt-4o",
   cache_read_tokens=64`), and with that model and prices off (`configure(prices=False)`).
2. Per-execution CPU with cost on against cost off: the 6-step shape of `benchmarks.versus`, each
   step recording usage with that model, spans exported to a local sink; prices on (the default)
   and `prices=False`, plus today's shape without a model for reference.

Every figure comes from a fresh process (rounds interleaved, so drift on a shared machine hits
each variant alike); the agent thread's CPU (`time.thread_time`). Prints medians and the least
disturbed run (min); nothing is asserted (a benchmark, not a test). On a shared machine seconds are
noisy: `--instructions` counts the instructions the whole process executes per execution instead
(callgrind, a run of 100 executions differenced from one of 400, as `benchmarks.versus` does), with
tracing off: the span exporter's thread batches by time, and under valgrind that alone moves the
count by more than cost does.
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
from collections.abc import Callable
from pathlib import Path

from benchmarks.versus import _Sink

REPO = Path(__file__).resolve().parents[1]

# argv: variant, calls
PER_CALL = textwrap.dedent(
    """
    import json, sys, time
    import exporter
    variant, n = sys.argv[1], int(sys.argv[2])
    exporter.configure(service_name="cost", metrics_port=None, tracing=False, log_level="off",
                       prices=False if variant == "model, prices off" else None)
    if variant == "plain (today)":
        def use(step): step.record_usage(100, 20)
    else:
        def use(step): step.record_usage(100, 20, cache_read_tokens=64, model="gpt-4o")
    with exporter.execution("invoice", trigger="email") as run, run.step("Extract") as step:
        for _ in range(2000):  # first-call costs: series, the price look-up
            use(step)
        t0 = time.thread_time()
        for _ in range(n):
            use(step)
        t1 = time.thread_time()
        for _ in range(n):
            pass
        t2 = time.thread_time()
    print(json.dumps({"us": ((t1 - t0) - (t2 - t1)) / n * 1e6}))
    """
)

# argv: variant, executions, endpoint
PER_EXECUTION = textwrap.dedent(
    """
    import json, sys, time
    import exporter
    variant, n, endpoint, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    tracing = {"tracing": False} if endpoint == "off" else {"otlp_endpoint": endpoint}
    exporter.configure(service_name="cost", metrics_port=None, log_level="off",
                       prices=False if variant == "model, cost off" else None, **tracing)
    model = None if variant == "no model (today)" else "gpt-4o"

    def one(i):
        with exporter.execution("invoice", trigger="email", task_id=f"T-{i}") as run:
            for name in ("Extract", "Validate", "Route", "Approve", "Update CRM", "Notify"):
                with run.step(name, tool="custom_gpt") as step:
                    with step.tool_call("custom_gpt"):
                        pass
                    if model is None:
                        step.record_usage(input_tokens=100, output_tokens=20)
                    else:
                        step.record_usage(input_tokens=100, output_tokens=20, cache_read_tokens=64, model=model)
                    step.evaluate("accuracy", score=0.9)

    for i in range(warmup):
        one(i)
    exporter.flush(30)
    t0 = time.thread_time()
    for i in range(n):
        one(i)
    t1 = time.thread_time()
    ok = exporter.flush(30)
    print(json.dumps({"us": (t1 - t0) / n * 1e6, "flushed": ok}))
    """
)

CALL_VARIANTS = ("plain (today)", "model, prices on", "model, prices off")
EXEC_VARIANTS = ("no model (today)", "model, cost on", "model, cost off")


def _run(code: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                         check=True, timeout=600)  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us"])


def _instructions(variant: str, n: int, endpoint: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", PER_EXECUTION,
         variant, str(n), endpoint, "20"],
        capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=1800,
    )  # fmt: skip
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"no instruction count in valgrind's output: {out.stderr[-500:]}")


def _rounds(rounds: int, variants: tuple[str, ...], run: Callable[[str], float]) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else tuple(reversed(variants))
        for v in order:
            got[v].append(run(v))
    return got


def _table(got: dict[str, list[float]], unit: str) -> dict[str, float]:
    med = {}
    for v, xs in got.items():
        med[v] = statistics.median(xs)
        print(f"  {v:22} {med[v]:9.2f} {unit}   min {min(xs):.2f}   (runs: {', '.join(f'{x:.2f}' for x in xs)})")
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=20_000, help="record_usage calls per process")
    p.add_argument("--executions", type=int, default=3000, help="executions per process")
    p.add_argument("--instructions", action="store_true", help="part 2 only, instructions under valgrind")
    a = p.parse_args()
    if a.instructions:
        _count_instructions()
        return

    print(f"1. record_usage per call, agent thread ({a.calls} calls x {a.rounds} processes each, tracing off)")
    calls = _table(_rounds(a.rounds, CALL_VARIANTS, lambda v: _run(PER_CALL, v, str(a.calls))), "µs/call")
    plain = calls["plain (today)"]
    print(f"  with a model and a price: +{calls['model, prices on'] - plain:.2f} µs per call over today's plain call")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    try:
        print(f"2. per execution, agent thread ({a.executions} executions x {a.rounds} processes each; 6 steps, "
              "each recording usage; spans exported to a local sink)")  # fmt: skip
        run = _rounds(a.rounds, EXEC_VARIANTS, lambda v: _run(PER_EXECUTION, v, str(a.executions), endpoint, "300"))
        execs = _table(run, "µs/exec")
    finally:
        server.shutdown()
    ratio = execs["model, cost on"] / execs["model, cost off"]
    low = min(run["model, cost on"]) / min(run["model, cost off"])
    print(f"  cost on / cost off: {ratio:.3f}x (median), {low:.3f}x (min)")


def _count_instructions() -> None:
    per: dict[str, float] = {}
    print("2. per execution, instructions of the whole process (tracing off; 400 - 100 executions)")
    for v in EXEC_VARIANTS:
        per[v] = (_instructions(v, 400, "off") - _instructions(v, 100, "off")) / 300
        print(f"  {v:22} {per[v]:14,.0f} instructions/exec")
    print(f"  cost on / cost off: {per['model, cost on'] / per['model, cost off']:.3f}x")


if __name__ == "__main__":
    main()
