"""What pricing model usage costs (issue 24), side by side in one run.

    python -m benchmarks.cost [--rounds 9] [--calls 20000] [--executions 3000]
    python -m benchmarks.cost --instructions [--seeds 3]   # part 2 under valgrind: repeatable

1. `step.record_usage` per call: today's plain call (`record_usage(100, 20)`) against the same
   call with a model priced by genai-prices and a cache part (`model="gpt-4o",
   cache_read_tokens=64`), and with that model and prices off (`configure(prices=False)`).
2. Per-execution CPU with cost on against cost off: the 6-step shape of `benchmarks.versus`, each
   step recording usage with that model; prices on (the default) and `prices=False`, plus today's
   shape without a model for reference. Three ways of tracing: spans exported to a local OTLP
   sink, spans made but not exported (`configure()` with no endpoint), and tracing off.

Every figure comes from a fresh process, rounds interleaved so drift on a shared machine hits each
variant alike, and the variants of a round share one `PYTHONHASHSEED` (dict layouts move a
process's figures by about 1%): the ratio cost on / cost off is taken per round and its median
printed. Part 2 reads the agent thread's CPU (`time.thread_time`) and the process's CPU with the
spans flushed (export work included); executions run in batches of 100 with a flush after each, so
the export queue never drops a span (the dropped count is printed). Nothing is asserted (a
benchmark, not a test).

3. The same execution in one process, prices switched on and off between samples of 200
   executions (the runtime's price list, or None as `prices=False` leaves it): one heap, one set of
   imports and series for both, so process-to-process variance is out of the comparison. Prints
   median, minimum and 10th percentile each way; the headline ratio for "cost on / cost off".

Seconds on a shared virtual machine vary by 10% from one second to the next; `--instructions`
counts the instructions the whole process executes per execution instead (callgrind, a run of 100
executions differenced from one of 400, as `benchmarks.versus` does), averaged over hash seeds:
with tracing off, with spans made, and with spans encoded to OTLP protobuf as the exporter does
but not sent (under valgrind the HTTP exporter's batches follow the clock, which moves the count
by more than cost does).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

# The 6-step execution and the way of tracing, shared by the per-execution workers below: it reads
# `endpoint` ("off": tracing off; "made": spans made, not exported; "encoded": spans encoded as an
# OTLP exporter does, not sent; else an OTLP/HTTP endpoint) and `model` (None: today's call).
_SHAPE = textwrap.dedent(
    """
    tracing = {"tracing": False} if endpoint == "off" else {} if endpoint == "made" else {"otlp_endpoint": endpoint}
    if endpoint == "encoded":  # what an OTLP exporter does to each span, without the network
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        class Encoded(SpanExporter):
            def export(self, spans):
                encode_spans(spans).SerializeToString()
                return SpanExportResult.SUCCESS

        tracing = {"span_exporter": Encoded()}

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
    """
)

# argv: variant, executions, endpoint (as in _SHAPE), warm-up
PER_EXECUTION = (
    textwrap.dedent(
        """
        import json, sys, time
        import exporter
        variant, n, endpoint, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
        model = None if variant == "no model (today)" else "gpt-4o"
        """
    )
    + _SHAPE
    + textwrap.dedent(
        """
        exporter.configure(service_name="cost", metrics_port=None, log_level="off",
                           prices=False if variant == "model, cost off" else None, **tracing)
        for start in range(0, warmup, 100):
            for i in range(start, min(warmup, start + 100)):
                one(i)
            exporter.flush(30)
        agent = 0.0
        p0 = time.process_time()
        for start in range(0, n, 100):  # batches the export queue holds whole: no span dropped
            t0 = time.thread_time()
            for i in range(start, min(n, start + 100)):
                one(i)
            agent += time.thread_time() - t0
            exporter.flush(30)
        p1 = time.process_time()
        dropped = sum(s.value for m in exporter.registry().collect() if m.name == "agent_exporter_dropped"
                      for s in m.samples if s.name.endswith("_total"))
        print(json.dumps({"us": agent / n * 1e6, "process_us": (p1 - p0) / n * 1e6, "dropped": dropped}))
        """
    )
)

# argv: endpoint (as in _SHAPE), samples, executions per sample. One process, prices switched on
# and off between samples: the same heap, imports and series for both, so what differs is pricing.
TOGGLED = (
    textwrap.dedent(
        """
        import json, sys, time
        import exporter
        from exporter import _runtime
        endpoint, samples, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        model = "gpt-4o"
        """
    )
    + _SHAPE
    + textwrap.dedent(
        """
        exporter.configure(service_name="cost", metrics_port=None, log_level="off", **tracing)
        runtime = _runtime.current()
        prices = runtime.prices  # what configure() made; None below is what prices=False makes
        got = {"on": [], "off": []}
        for r in range(samples + 4):  # the first four each way are warm-up
            for key in (("on", "off") if r % 2 == 0 else ("off", "on")):
                runtime.prices = prices if key == "on" else None
                t0, p0 = time.thread_time(), time.process_time()
                for i in range(per):
                    one(i)
                t1 = time.thread_time()
                exporter.flush(30)
                if r >= 4:
                    got[key].append(((t1 - t0) / per * 1e6, (time.process_time() - p0) / per * 1e6))
        print(json.dumps(got))
        """
    )
)

CALL_VARIANTS = ("plain (today)", "model, prices on", "model, prices off")
EXEC_VARIANTS = ("no model (today)", "model, cost on", "model, cost off")


def _run(code: str, *args: str, seed: int = 0) -> dict[str, float]:
    # One hash seed per round, the same for every variant in it: dict and set layouts (which move
    # timings by several percent from one process to the next) are then alike within a round.
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": str(seed)}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                         check=True, timeout=600)  # fmt: skip
    return {k: float(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def _one_execution(executions: int, where: str, variant: str, seed: int) -> dict[str, float]:
    return _run(PER_EXECUTION, variant, str(executions), where, "300", seed=seed)


def _instructions(variant: str, n: int, endpoint: str, seed: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": str(seed)}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", PER_EXECUTION,
         variant, str(n), endpoint, "20"],
        capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=1800,
    )  # fmt: skip
    for line in out.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"no instruction count in valgrind's output: {out.stderr[-500:]}")


Runs = dict[str, list[dict[str, float]]]


def _rounds(rounds: int, variants: tuple[str, ...], run: Callable[[str, int], dict[str, float]]) -> Runs:
    got: Runs = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else tuple(reversed(variants))
        for v in order:
            got[v].append(run(v, r + 1))
    return got


def _table(got: Runs, key: str, unit: str) -> dict[str, float]:
    med = {}
    for v, runs in got.items():
        xs = [x[key] for x in runs]
        med[v] = statistics.median(xs)
        print(f"  {v:22} {med[v]:9.2f} {unit}   min {min(xs):.2f}   (runs: {', '.join(f'{x:.2f}' for x in xs)})")
    return med


def _ratio(got: Runs, key: str, on: str, off: str) -> str:
    """The ratio on / off per round (the two ran with the same hash seed), its median and spread."""
    ratios = sorted(a[key] / b[key] for a, b in zip(got[on], got[off], strict=True))
    return (f"{statistics.median(ratios):.3f}x median of {len(ratios)} paired rounds "
            f"(from {ratios[0]:.3f}x to {ratios[-1]:.3f}x)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--calls", type=int, default=20_000, help="record_usage calls per process")
    p.add_argument("--executions", type=int, default=3000, help="executions per process")
    p.add_argument("--samples", type=int, default=40, help="part 3: samples each way")
    p.add_argument("--per-sample", type=int, default=200, help="part 3: executions per sample")
    p.add_argument("--instructions", action="store_true", help="part 2 only, instructions under valgrind")
    p.add_argument("--seeds", type=int, default=3, help="with --instructions: hash seeds to average over")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="with --instructions: valgrind runs at once")
    a = p.parse_args()
    if a.instructions:
        _count_instructions(a.seeds, a.jobs)
        return

    print(f"1. record_usage per call, agent thread ({a.calls} calls x {a.rounds} processes each, tracing off)")
    got = _rounds(a.rounds, CALL_VARIANTS, lambda v, seed: _run(PER_CALL, v, str(a.calls), seed=seed))
    calls = _table(got, "us", "µs/call")
    plain = calls["plain (today)"]
    print(f"  with a model and a price: +{calls['model, prices on'] - plain:.2f} µs per call over today's plain call")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    try:
        for where, what in ((endpoint, "spans exported to a local sink"), ("made", "spans made, not exported"),
                            ("off", "tracing off")):  # fmt: skip
            print(f"2. per execution ({a.executions} executions x {a.rounds} processes each; 6 steps, each recording "
                  f"usage; {what})")  # fmt: skip
            run = _rounds(a.rounds, EXEC_VARIANTS, functools.partial(_one_execution, a.executions, where))
            print(" agent thread CPU")
            _table(run, "us", "µs/exec")
            print(f"  cost on / cost off: {_ratio(run, 'us', 'model, cost on', 'model, cost off')}")
            print(" process CPU, spans flushed")
            _table(run, "process_us", "µs/exec")
            print(f"  cost on / cost off: {_ratio(run, 'process_us', 'model, cost on', 'model, cost off')}")
            dropped = {v: sum(x["dropped"] for x in runs) for v, runs in run.items()}
            print(f"  dropped (agent_exporter_dropped_total, all runs): {dropped}")
        print(f"3. per execution, one process, prices switched on and off between samples ({a.samples} samples of "
              f"{a.per_sample} executions each way)")  # fmt: skip
        for where, what in ((endpoint, "spans exported to a local sink"), ("made", "spans made, not exported"),
                            ("off", "tracing off")):  # fmt: skip
            _toggled(where, what, a.samples, a.per_sample)
    finally:
        server.shutdown()


def _toggled(where: str, what: str, samples: int, per: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "1"}
    out = subprocess.run([sys.executable, "-c", TOGGLED, where, str(samples), str(per)], capture_output=True,
                         text=True, env=env, cwd=REPO, check=True, timeout=1200)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {what}:")
    for i, cpu in enumerate(("agent thread", "process, spans flushed")):
        on = sorted(x[i] for x in got["on"])
        off = sorted(x[i] for x in got["off"])
        p10 = len(on) // 10
        print(f"    {cpu:23} on {statistics.median(on):7.1f} µs (min {on[0]:.1f}, p10 {on[p10]:.1f})   "
              f"off {statistics.median(off):7.1f} µs (min {off[0]:.1f}, p10 {off[p10]:.1f})   cost on / cost off: "
              f"{statistics.median(on) / statistics.median(off):.3f}x median, {on[0] / off[0]:.3f}x min, "
              f"{on[p10] / off[p10]:.3f}x p10")  # fmt: skip


def _count_instructions(seeds: int, jobs: int) -> None:
    """Instructions per execution (400 - 100 executions), per mode and variant, for each hash seed:
    the count is the same run after run for one seed, and moves by about 1% between seeds."""
    modes = (("off", "tracing off"), ("made", "spans made, not exported (the default)"),
             ("encoded", "spans encoded to OTLP, not sent"))  # fmt: skip
    seed_range = range(1, seeds + 1)
    runs = [(m, v, n, seed) for m, _ in modes for v in EXEC_VARIANTS for n in (400, 100) for seed in seed_range]
    with ThreadPoolExecutor(jobs) as pool:  # valgrind counts instructions, not time: runs can share the CPUs
        counts = dict(zip(runs, pool.map(lambda r: _instructions(r[1], r[2], r[0], r[3]), runs), strict=True))
    for mode, what in modes:
        print(f"2. per execution, instructions of the whole process ({what}; 400 - 100 executions, "
              f"hash seeds 1-{seeds})")  # fmt: skip
        per: dict[str, list[float]] = {}
        for v in EXEC_VARIANTS:
            per[v] = [(counts[mode, v, 400, s] - counts[mode, v, 100, s]) / 300 for s in range(1, seeds + 1)]
            print(f"  {v:22} {statistics.mean(per[v]):14,.0f} instructions/exec   "
                  f"(per seed: {', '.join(f'{x:,.0f}' for x in per[v])})")  # fmt: skip
        ratios = [a / b for a, b in zip(per["model, cost on"], per["model, cost off"], strict=True)]
        print(f"  cost on / cost off: {statistics.mean(ratios):.3f}x mean (per seed: "
              f"{', '.join(f'{r:.3f}x' for r in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
