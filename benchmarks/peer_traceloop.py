"""OpenLLMetry (traceloop-sdk) producing the same span tree, run inside its own venv.

traceloop-sdk 0.45.6 needs OpenTelemetry 1.34 and conflicts with ours (1.45), so `run.py` runs this
file with `.benchmarks/traceloop-venv/bin/python`; it imports nothing from `exporter`. A `@workflow`
per execution, a `@task` per step, a `@tool` per tool call: spans only (traceloop has no
Prometheus metrics). Telemetry to Traceloop and its metrics pipeline are off; spans go to the
local receiver given by --endpoint. Prints one JSON line with the medians.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time

os.environ["TRACELOOP_TELEMETRY"] = "false"
os.environ["TRACELOOP_METRICS_ENABLED"] = "false"
os.environ["TRACELOOP_LOGGING_ENABLED"] = "false"
os.environ["TRACELOOP_TRACE_CONTENT"] = "false"

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.shape import AGENT, STEP_INPUT, STEP_OUTPUT, STEPS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()

    from importlib.metadata import version

    from opentelemetry import trace
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task, tool, workflow

    Traceloop.init(app_name="bench-traceloop", api_endpoint=a.endpoint, telemetry_enabled=False)
    provider = trace.get_tracer_provider()

    def make_step(name: str, tool_name: str):  # noqa: ANN202
        @tool(name=tool_name)
        def call_tool(payload):  # noqa: ANN001, ANN202
            return None

        @task(name=name)
        def run_step(payload):  # noqa: ANN001, ANN202
            call_tool(payload)
            return STEP_OUTPUT

        return run_step

    steps = [make_step(n, t) for n, t in STEPS]

    @workflow(name=AGENT)
    def execution(task_id):  # noqa: ANN001, ANN202
        for s in steps:
            s(STEP_INPUT)

    ids = itertools.count()
    out: dict[str, object] = {"version": version("traceloop-sdk"), "otel_sdk": version("opentelemetry-sdk")}
    for content in ("false", "true"):
        os.environ["TRACELOOP_TRACE_CONTENT"] = content  # read on every call by the decorators
        wall: list[float] = []
        cpu: list[float] = []
        for r in range(a.warmup + a.rounds):
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(a.batch):
                execution(f"T-{next(ids)}")
            t1 = time.perf_counter()
            provider.force_flush()
            c1 = time.process_time()
            if r >= a.warmup:
                wall.append((t1 - t0) / a.batch * 1e6)
                cpu.append((c1 - c0) / a.batch * 1e6)
        key = "content" if content == "true" else "plain"
        out[key] = {"wall_us": statistics.median(wall), "cpu_us": statistics.median(cpu)}
    out["executions"] = next(ids)
    out["spans_per_execution"] = 1 + 2 * len(STEPS)
    print(json.dumps(out), flush=True)
    provider.shutdown()


if __name__ == "__main__":
    main()
