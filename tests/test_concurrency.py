"""Threads and asyncio: exact totals, and every step span's parent is its own execution's span."""

from __future__ import annotations

import asyncio
import threading

import exporter
from exporter import testing


def _check_parents(spans) -> int:
    executions = {s.context.span_id: s for s in spans if s.name.startswith("invoke_workflow")}
    steps = [s for s in spans if s.name.startswith("step")]
    for s in steps:
        parent = executions[s.parent.span_id]
        assert parent.attributes["task.id"] == s.name.split(":")[1], "step under the wrong execution"
        assert parent.context.trace_id == s.context.trace_id
    return len(steps)


def test_eight_threads_of_500_executions_have_exact_totals():
    """8 threads x 500 executions: counters exact, every step under its own execution."""
    with testing.capture(log_level="off") as cap:
        barrier = threading.Barrier(8)

        def worker(w: int) -> None:
            barrier.wait()
            for i in range(500):
                tid = f"{w}-{i}"
                try:
                    with exporter.execution("a", trigger="webhook", task_id=tid) as run:
                        with run.step(f"step:{tid}") as s:
                            s.record_usage(input_tokens=3, output_tokens=1)
                            s.evaluate("q", score=0.5)
                        if i % 10 == 0:
                            raise exporter.ToolError("x")
                except exporter.ToolError:
                    pass

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert cap.value("agent_executions_started_total", agent="a", trigger="webhook") == 4000
        assert cap.value("agent_executions_finished_total", agent="a", trigger="webhook", status="completed") == 3600
        assert cap.value("agent_execution_failures_total", agent="a", trigger="webhook", cause="tool_error") == 400
        assert cap.value("agent_executions_in_progress", agent="a") == 0
        assert cap.total("agent_tokens_total", agent="a", type="input") == 12000
        assert cap.total("agent_step_evaluation_score_count", agent="a") == 4000
        assert _check_parents(cap.spans()) == 4000


async def test_500_concurrent_asyncio_executions_with_awaits_inside_steps():
    """500 concurrent tasks awaiting inside steps: exact totals, no step under a stranger."""
    with testing.capture(log_level="off", max_label_values=10_000) as cap:

        async def one(i: int) -> None:
            async with exporter.execution("b", trigger="email", task_id=str(i)) as run:
                for k in range(2):
                    async with run.step(f"step:{i}:{k}") as s:
                        await asyncio.sleep(0.001 * (i % 7))
                        async with s.tool_call("gmail"):
                            await asyncio.sleep(0)

        await asyncio.gather(*(one(i) for i in range(500)))
        assert cap.value("agent_executions_finished_total", agent="b", trigger="email", status="completed") == 500
        assert cap.value("agent_tool_calls_total", agent="b", tool="gmail", outcome="success") == 1000
        assert cap.total("agent_steps_total", agent="b") == 1000
        assert cap.value("agent_executions_in_progress", agent="b") == 0
        spans = cap.spans()
        executions = {s.context.span_id: s for s in spans if s.name.startswith("invoke_workflow")}
        steps = [s for s in spans if s.name.startswith("step:")]
        assert len(steps) == 1000
        for s in steps:
            assert executions[s.parent.span_id].attributes["task.id"] == s.name.split(":")[1]
            assert s.attributes["task.step.index"] == int(s.name.split(":")[2]) + 1
