"""Worker functions for the task store's multi-process tests (run in spawned processes).

Each worker configures the library with its own registry and the shared store, does its part,
flushes, and returns what it did and what its metrics counted, for the parent to compare with
the store.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

import exporter
from exporter.testing import metric_total

STATUSES = ("completed", "failed", "cancelled")


def _configure(url: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    exporter.configure(
        "tasks-test", metrics_port=None, tracing=False, registry=registry, task_store=url, log_level="off"
    )
    return registry


def _finished(registry: CollectorRegistry) -> dict[str, float]:
    return {s: metric_total(registry, "agent_executions_finished_total", status=s) for s in STATUSES}


def run_and_suspend(url: str, worker: int, n: int) -> dict[str, Any]:
    """n executions: a quarter fail, a quarter complete, half suspend for approval (carriers returned)."""
    registry = _configure(url)
    carriers = []
    try:
        for i in range(n):
            agent = f"agent-{i % 2}"
            with exporter.execution(agent, "email", task_id=f"w{worker}-{i}", description=f"task {i}") as run:
                with run.step("read") as step:
                    step.evaluate("accuracy", 0.5 + (i % 5) / 10)
                if i % 4 == 0:
                    run.fail("tool_error", "the tool broke")
                elif i % 4 != 1:
                    carriers.append(run.suspend("approval"))
        flushed = exporter.flush(20)
        return {"carriers": carriers, "finished": _finished(registry), "flushed": flushed}
    finally:
        exporter.reset()


def resume(url: str, carriers: list[dict[str, Any]], cancel_every: int) -> dict[str, Any]:
    """Resume each carrier: complete it, or cancel every `cancel_every`-th one."""
    registry = _configure(url)
    try:
        for i, carrier in enumerate(carriers):
            with exporter.resume_execution(carrier) as run:
                with run.step("approve"):
                    pass
                if cancel_every and i % cancel_every == 0:
                    run.cancel("rejected")
        flushed = exporter.flush(20)
        return {"finished": _finished(registry), "flushed": flushed}
    finally:
        exporter.reset()
