"""A small simulated agent workload using only the public API (the `agent-exporter demo` command)."""

from __future__ import annotations

import argparse
import random
import signal
import threading
import time
from typing import Any

import exporter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=9464, help="port for /metrics (default 9464)")
    p.add_argument("--addr", default="0.0.0.0", help="bind address for /metrics")
    p.add_argument("--otlp-endpoint", default=None, help="OTLP/HTTP endpoint, e.g. http://localhost:4318")
    p.add_argument("--duration", type=float, default=0, help="seconds to run (0 = until Ctrl-C)")
    p.add_argument("--rate", type=float, default=5.0, help="executions per second")
    p.add_argument("--seed", type=int, default=1)


def _one(rng: random.Random) -> None:
    with exporter.execution("invoice", trigger=rng.choice(["email", "webhook"])) as run:
        with run.step("Extract the Required Information from the Invoice", tool="custom_gpt") as step:
            with step.tool_call("custom_gpt"):
                time.sleep(rng.uniform(0.001, 0.01))
            step.record_usage(input_tokens=rng.randint(500, 1500), output_tokens=rng.randint(50, 300))
            step.evaluate("accuracy", score=rng.uniform(0.8, 1.0))
        with run.step("Validate") as step:
            if rng.random() < 0.05:
                raise exporter.ValidationFailure("total does not match line items")
        with run.step("Update the CRM", tool="salesforce") as step, step.tool_call("salesforce"):
            time.sleep(rng.uniform(0.001, 0.005))


def run(args: Any) -> int:
    exporter.configure(
        service_name="agent-exporter-demo",
        metrics_port=args.port,
        metrics_addr=args.addr,
        otlp_endpoint=args.otlp_endpoint,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.duration if args.duration else None
    print(f"agent-exporter demo: /metrics on http://{args.addr}:{args.port}/metrics (Ctrl-C to stop)", flush=True)
    n = 0
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                _one(rng)
            except exporter.ExecutionFailure:
                pass
            n += 1
            stop.wait(1.0 / args.rate)
    except KeyboardInterrupt:
        pass
    exporter.shutdown()
    print(f"agent-exporter demo: {n} executions", flush=True)
    return 0
