"""A scripted agent for the re-run tests (issue 26): task n fails its `total_matches` criterion
when n is in the version's broken set. v1 is production; v2 repairs 1, 4, 7 and breaks 3."""

from __future__ import annotations

import asyncio
from typing import Any

import exporter

V1_BROKEN = frozenset({1, 4, 7, 10, 13, 16, 19})
V2_BROKEN = frozenset({3, 10, 13})


def _steps(run: Any, n: int, broken: frozenset[int]) -> dict[str, Any]:
    with run.step("extract", tool="ocr") as step:
        with step.tool_call("ocr"):
            pass
        step.evaluate("format", 0.95)
        step.record_usage(100, 10)
    ok = n not in broken
    with run.step("check") as step:
        step.evaluate("total_matches", score=1.0 if ok else 0.2)
        step.branch("accept" if ok else "reject", ["reject" if ok else "accept"])
    if not ok:
        run.fail("validation_failure", f"task {n}: the total does not match")
    return {"n": n, "ok": ok}


def handle(task: dict[str, Any], broken: frozenset[int] = V1_BROKEN, version: str = "v1") -> dict[str, Any]:
    """Production code: names its own trigger, task id and version (a re-run's win over them)."""
    n = int(task["n"])
    with exporter.execution("scripted", trigger="api", task_id=f"T-{n:02d}", version=version, steps=2) as run:
        run.record_input(task)
        out = _steps(run, n, broken)
        run.record_output(out)
    return out


def v1(task: dict[str, Any]) -> dict[str, Any]:
    return handle(task)


def v2(task: dict[str, Any]) -> dict[str, Any]:
    return handle(task, V2_BROKEN, "v2-dev")


async def v2_async(task: dict[str, Any]) -> dict[str, Any]:
    n = int(task["n"])
    async with exporter.execution("scripted", trigger="api", task_id=f"T-{n:02d}", steps=2) as run:
        run.record_input(task)
        await asyncio.sleep(0.001)
        out = _steps(run, n, V2_BROKEN)
        run.record_output(out)
    return out


def v2_raising(task: dict[str, Any]) -> dict[str, Any]:
    """v2, except that task 0 raises inside its execution."""
    if int(task["n"]) == 0:
        with exporter.execution("scripted", trigger="api", task_id="T-00") as run:
            run.record_input(task)
            raise RuntimeError("the new parser crashed")
    return v2(task)


def v2_interrupted_at_3(task: dict[str, Any]) -> dict[str, Any]:
    """v2, except that task 3 presses Ctrl-C (SIGINT to this process) and then takes its time."""
    if int(task["n"]) == 3:
        import os
        import signal
        import time

        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(2)
    return v2(task)
