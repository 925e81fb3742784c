"""Measurements that need a fresh process of their own: backend modes and exit time, memory.

`python3 -m benchmarks.child overhead --variant library|handwritten --endpoint URL ...` prints a
JSON line of results, then `DONE` and exits the ordinary way (the parent times the exit from
`DONE` to the process's end). `python3 -m benchmarks.child memory --checkpoints 10000,100000`
prints RSS at each checkpoint.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import statistics
import sys
import time
from typing import Any

from exporter.traces.export import DEFAULT_SHUTDOWN_TIMEOUT


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _dropped(registry: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in registry.collect():
        if fam.name == "agent_exporter_dropped":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out[s.labels["reason"]] = s.value
    return out


def overhead(a: argparse.Namespace) -> None:
    from . import workload as w

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # the host app's usual logging
    ids = itertools.count()
    state = None
    hw = None
    if a.variant == "library":
        state = w.configure_library(a.endpoint, shutdown_timeout=a.shutdown_timeout)
        fn = w.run_library
    else:
        hw = w.HandWritten(a.endpoint)
        fn = hw.run
    flush = (lambda: w.library_flush(state)) if state is not None else hw.flush  # type: ignore[union-attr]
    wall: list[float] = []
    cpu: list[float] = []
    tcpu: list[float] = []
    for r in range(a.warmup + a.rounds):
        c0 = time.process_time()
        th0 = time.thread_time()
        t0 = time.perf_counter()
        for _ in range(a.batch):
            fn(f"T-{next(ids)}", a.capture)
        t1 = time.perf_counter()
        th1 = time.thread_time()
        if a.flush:
            flush()
        c1 = time.process_time()
        if r >= a.warmup:
            wall.append((t1 - t0) / a.batch * 1e6)
            cpu.append((c1 - c0) / a.batch * 1e6)
            tcpu.append((th1 - th0) / a.batch * 1e6)
        time.sleep(a.pause)
    result: dict[str, Any] = {
        "wall_us": statistics.median(wall),
        "thread_cpu_us": statistics.median(tcpu),
        "executions": next(ids),
    }
    if a.flush:
        result["cpu_us"] = statistics.median(cpu)
    if state is not None:
        result["dropped"] = _dropped(state.metrics.registry)
        result["exported"] = state.tracing.processor.exported if state.tracing.processor else 0
    print(json.dumps(result), flush=True)
    if a.shutdown:
        t = time.perf_counter()
        if state is not None:
            import exporter

            exporter.shutdown()
        elif hw is not None:
            hw.shutdown()
        print(json.dumps({"shutdown_s": time.perf_counter() - t}), flush=True)
    print("DONE", flush=True)
    # ...and the interpreter exits the ordinary way (atexit hooks, daemon threads).


def memory(a: argparse.Namespace) -> None:
    from . import workload as w

    w.configure_library(a.endpoint)
    checkpoints = sorted(int(x) for x in a.checkpoints.split(","))
    done = 0
    warm = min(1000, checkpoints[0])
    t0 = time.perf_counter()
    for i in range(warm):
        w.run_library(f"warm-{i}")
    done = warm
    gc.collect()
    print(json.dumps({"n": done, "rss_mib": rss_mib(), "s": time.perf_counter() - t0}), flush=True)
    for cp in checkpoints:
        t = time.perf_counter()
        for i in range(done, cp):
            w.run_library(f"task-{i:09d}")  # unique task ids
        elapsed = time.perf_counter() - t
        gc.collect()
        print(json.dumps({"n": cp, "rss_mib": rss_mib(), "rate": (cp - done) / max(elapsed, 1e-9)}), flush=True)
        done = cp
    print("DONE", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--variant", choices=("library", "handwritten"), default="library")
    o.add_argument("--endpoint", required=True)
    o.add_argument("--rounds", type=int, default=15)
    o.add_argument("--batch", type=int, default=100)
    o.add_argument("--warmup", type=int, default=3)
    o.add_argument("--pause", type=float, default=0.0)
    o.add_argument("--shutdown", action="store_true", help="call shutdown() before exiting")
    o.add_argument(
        "--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT, help="configure(shutdown_timeout=...)"
    )
    o.add_argument("--flush", action="store_true", help="flush after each batch; report CPU incl. export")
    o.add_argument("--capture", action="store_true", help="record_input/record_output in every step")
    m = sub.add_parser("memory")
    m.add_argument("--endpoint", required=True)
    m.add_argument("--checkpoints", default="10000,100000")
    a = p.parse_args()
    {"overhead": overhead, "memory": memory}[a.cmd](a)


if __name__ == "__main__":
    main()
