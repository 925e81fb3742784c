"""What `span_metrics=True` costs per framework span, and what it delivered.

A framework-shaped run (GenAI semconv: `invoke_agent`, three `chat` spans with usage, three
`execute_tool` spans: 7 spans) is made by two SDK TracerProviders in turn, one bare and one with
the span bridge; the difference per span, in the agent's thread, is the bridge's cost (reading
the spans, assembling the run, and recording its metrics). Interleaved, medians, like section 1.
The metrics it delivered are counted against the runs made, so a cheap but lossy bridge shows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

SPANS_PER_RUN = 7


def _run(tracer: Any, op: str, agent_attr: str, tin: str, tout: str, tool_attr: str) -> None:
    with tracer.start_as_current_span("invoke_agent weather", attributes={op: "invoke_agent", agent_attr: "weather"}):
        for _ in range(3):
            with tracer.start_as_current_span("chat m", attributes={op: "chat", tin: 50, tout: 10}):
                pass
            tool = {op: "execute_tool", tool_attr: "lookup"}
            with tracer.start_as_current_span("execute_tool lookup", attributes=tool):
                pass


def measure(rounds: int, batch: int, warmup: int) -> dict[str, Any]:
    """Median µs per span, bare and bridged; executions and tokens delivered vs expected."""
    from opentelemetry.sdk.trace import TracerProvider

    import exporter
    from exporter import semconv as sc
    from exporter.testing import fresh_registry, metric_total

    exporter.reset()
    registry = fresh_registry()
    bridged = TracerProvider()
    exporter.configure(
        service_name="bench-bridge", metrics_port=None, registry=registry, tracer_provider=bridged,
        span_metrics=True, log_level="off",
    )  # fmt: skip
    bare = TracerProvider()
    args = (
        sc.ATTR_GEN_AI_OPERATION_NAME, sc.ATTR_GEN_AI_AGENT_NAME, sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS,
        sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, sc.ATTR_GEN_AI_TOOL_NAME,
    )  # fmt: skip
    bare_tracer, bridged_tracer = bare.get_tracer("framework"), bridged.get_tracer("framework")
    variants: dict[str, Callable[[], None]] = {
        "bare SDK": lambda: _run(bare_tracer, *args),
        "with span bridge": lambda: _run(bridged_tracer, *args),
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    runs = {k: 0 for k in variants}
    for r in range(warmup + rounds):
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            dt = time.perf_counter() - t0
            runs[name] += batch
            if r >= warmup:
                samples[name].append(dt / batch / SPANS_PER_RUN * 1e6)
    per_span = {k: statistics.median(v) for k, v in samples.items()}
    delivered = {
        "runs": runs["with span bridge"],
        "executions": metric_total(registry, "agent_executions_finished_total"),
        "tool_calls": metric_total(registry, "agent_tool_calls_total"),
        "input_tokens": metric_total(registry, "agent_tokens_total", type="input"),
        "dropped": metric_total(registry, "agent_exporter_dropped_total"),
    }
    exporter.reset()
    return {"per_span": per_span, "delivered": delivered}


if __name__ == "__main__":
    result = measure(rounds=15, batch=200, warmup=2)
    ps, d = result["per_span"], result["delivered"]
    print(f"bare {ps['bare SDK']:.2f} µs/span, bridged {ps['with span bridge']:.2f} µs/span, "
          f"bridge {ps['with span bridge'] - ps['bare SDK']:.2f} µs/span")  # fmt: skip
    print(f"runs {d['runs']}, executions counted {d['executions']:.0f}, tool calls {d['tool_calls']:.0f} "
          f"(expected {3 * d['runs']}), input tokens {d['input_tokens']:.0f} (expected {150 * d['runs']}), "
          f"dropped {d['dropped']:.0f}")  # fmt: skip
