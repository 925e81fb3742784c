"""Issue 25: real frameworks that stop for a human, offline: one execution that waits, then resumes.

The user's code only wraps each run in `exporter.task(trigger=, task_id=)`, the same task id for the
first run and its resume. Counts are exact: started, finished by status, the pending gauge while
waiting, the waits observed in `agent_execution_pending_duration_seconds`, the task store row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.tasks.query import get_task
from tests.frameworks import require_frameworks
from tests.servers import PrometheusServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PENDING_COUNT = sc.EXECUTION_PENDING_DURATION.name + "_count"
# Seconds the human takes: excluded from the runtime. Longer than a scripted run takes on a loaded
# CI machine (0.34 s was seen for the OpenAI Agents SDK pair), so "runtime < WAIT" shows the exclusion.
WAIT = 1.5


@pytest.fixture(autouse=True)
def _frameworks() -> None:
    require_frameworks()


def _row(cap: testing.Capture, task_id: str) -> dict[str, object]:
    cap.state.tasks.flush(5)
    row = cap.state.tasks.read(lambda b: get_task(b, task_id))
    assert row is not None
    return row


@pytest.mark.parametrize("instrumentor", ["openinference", "openllmetry"])
def test_langgraph_interrupt_waits_and_resume_finishes_once(instrumentor: str, tmp_path: Path) -> None:
    """interrupt(): started 1, finished 0, pending 1, row pending; Command(resume=): completed 1, one wait."""
    from tests.frameworks.hitl import GRAPH_NAME, langgraph_resume, langgraph_start

    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=f"sqlite:///{tmp_path / 't.db'}") as cap:
        with exporter.task(trigger="email", task_id="inv-1"):
            out, saver = langgraph_start("inv-1", tp, instrumentor)  # type: ignore[arg-type]
        assert "__interrupt__" in out
        v = cap.value
        assert v(sc.EXECUTIONS_STARTED.name, agent=GRAPH_NAME, trigger="email") == 1
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 0
        assert v(sc.EXECUTIONS_PENDING.name, agent=GRAPH_NAME, reason="approval") == 1
        row = _row(cap, "inv-1")
        assert row["status"] == "pending" and row["waiting_reason"] == "approval" and row["waiting_since"]
        time.sleep(WAIT)
        with exporter.task(trigger="email", task_id="inv-1"):
            done = langgraph_resume("inv-1", tp, instrumentor, saver=saver)  # type: ignore[arg-type]
        assert done["done"] == "paid"
        assert v(sc.EXECUTIONS_STARTED.name, agent=GRAPH_NAME, trigger="email") == 1
        assert v(sc.EXECUTIONS_FINISHED.name, agent=GRAPH_NAME, trigger="email", status="completed") == 1
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 1
        assert cap.total(sc.EXECUTION_FAILURES.name) == 0
        assert v(sc.EXECUTIONS_PENDING.name, agent=GRAPH_NAME, reason="approval") == 0
        assert v(PENDING_COUNT, agent=GRAPH_NAME, reason="approval") == 1
        assert v(sc.EXECUTION_PENDING_DURATION.name + "_sum", agent=GRAPH_NAME, reason="approval") >= WAIT
        # route once, approve once (its interrupted run is not a step), crm once
        assert cap.total(sc.STEPS.name, status="passed") == 3 and cap.total(sc.STEPS.name, status="failed") == 0
        row = _row(cap, "inv-1")
        assert row["status"] == "completed" and row["steps_done"] == 3
        assert 0 < float(row["runtime_seconds"]) < WAIT  # type: ignore[arg-type]
        assert cap.total(sc.EXPORTER_DROPPED.name) == 0


@pytest.mark.parametrize("instrumentor", ["openinference", "openllmetry"])
def test_langgraph_resumed_in_a_second_process_with_the_same_task_store(instrumentor: str, tmp_path: Path) -> None:
    """Parked here, resumed by another process (same store, same checkpoints): one execution across both."""
    from tests.frameworks.hitl import GRAPH_NAME, langgraph_start

    store = f"sqlite:///{tmp_path / 't.db'}"
    checkpoints = tmp_path / "checkpoints.pickle"
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=store) as cap:
        with exporter.task(trigger="email", task_id="inv-2"):
            langgraph_start("inv-2", tp, instrumentor, checkpoints=checkpoints)  # type: ignore[arg-type]
        assert cap.value(sc.EXECUTIONS_STARTED.name, agent=GRAPH_NAME, trigger="email") == 1
        assert cap.value(sc.EXECUTIONS_PENDING.name, agent=GRAPH_NAME, reason="approval") == 1
        assert _row(cap, "inv-2")["status"] == "pending"
    time.sleep(WAIT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.frameworks.hitl", instrumentor, store, str(checkpoints), "inv-2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert second == {
        "done": "paid", "started": 0.0, "completed": 1.0, "failed": 0.0, "pending": 0.0, "pending_observed": 1.0,
        "steps": 2.0,
    }  # fmt: skip
    with testing.capture(task_store=store) as cap:
        row = cap.state.tasks.read(lambda b: get_task(b, "inv-2"))
        assert row["status"] == "completed" and row["agent"] == GRAPH_NAME and row["trigger"] == "email"
        assert row["steps_done"] == 3 and row["waiting_since"] is None
        assert 0 < row["runtime_seconds"] < WAIT


def test_openai_agents_approval_approved_in_one_task_and_rejected_in_another(tmp_path: Path) -> None:
    """needs_approval: each task waits (pending 2), then its resume finishes it once; nothing counted twice."""
    import agents  # noqa: F401 - imported before configure(), as an app's imports are (else hooked at the next tick)

    from tests.frameworks.hitl import PAYER, openai_resume, openai_start

    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=f"sqlite:///{tmp_path / 't.db'}") as cap:
        v = cap.value
        parked = {}
        for task_id in ("pay-ok", "pay-no"):
            with exporter.task(trigger="webhook", task_id=task_id):
                parked[task_id] = openai_start(tp)
            assert parked[task_id][1].interruptions
        assert v(sc.EXECUTIONS_STARTED.name, agent=PAYER, trigger="webhook") == 2
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 0
        assert v(sc.EXECUTIONS_PENDING.name, agent=PAYER, reason="approval") == 2
        assert {_row(cap, t)["status"] for t in parked} == {"pending"}
        time.sleep(WAIT)
        for task_id, approve in (("pay-ok", True), ("pay-no", False)):
            agent, result = parked[task_id]
            with exporter.task(trigger="webhook", task_id=task_id):
                final = openai_resume(tp, agent, result, approve)
            assert final.final_output == "done" and not final.interruptions
        assert v(sc.EXECUTIONS_STARTED.name, agent=PAYER, trigger="webhook") == 2
        # A rejected call goes back to the model as a refusal: the run completes, as the SDK ends it.
        assert v(sc.EXECUTIONS_FINISHED.name, agent=PAYER, trigger="webhook", status="completed") == 2
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 2
        assert v(sc.EXECUTIONS_PENDING.name, agent=PAYER, reason="approval") == 0
        assert v(PENDING_COUNT, agent=PAYER, reason="approval") == 2
        for task_id in parked:
            row = _row(cap, task_id)
            assert row["status"] == "completed" and row["waiting_since"] is None
            assert 0 < float(row["runtime_seconds"]) < WAIT  # type: ignore[arg-type]
        assert cap.total(sc.EXPORTER_DROPPED.name) == 0


def test_openai_agents_hook_is_removed_at_reset() -> None:
    """The runner hook is the runtime's: after reset the SDK's own default runner is back."""
    import agents.run

    from exporter.spans.hooks import HookedRunner

    before = agents.run.get_default_agent_runner()
    with testing.capture(span_metrics=True):
        assert isinstance(agents.run.get_default_agent_runner(), HookedRunner)
    assert agents.run.get_default_agent_runner() is before


def test_pydantic_ai_deferred_tool_approved(tmp_path: Path) -> None:
    """DeferredToolRequests: the run waits; deferred_tool_results= finishes it once, tool and tokens counted."""
    from tests.frameworks.hitl import PAYER, pydantic_resume, pydantic_start

    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=f"sqlite:///{tmp_path / 't.db'}") as cap:
        v = cap.value
        with exporter.task(trigger="email", task_id="pay-1"):
            result = pydantic_start(tp)
        assert result.output.approvals
        assert v(sc.EXECUTIONS_STARTED.name, agent=PAYER, trigger="email") == 1
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 0
        assert v(sc.EXECUTIONS_PENDING.name, agent=PAYER, reason="approval") == 1
        assert _row(cap, "pay-1")["status"] == "pending"
        time.sleep(WAIT)
        with exporter.task(trigger="email", task_id="pay-1"):
            assert pydantic_resume(tp, result).output == "done"
        assert v(sc.EXECUTIONS_STARTED.name, agent=PAYER, trigger="email") == 1
        assert v(sc.EXECUTIONS_FINISHED.name, agent=PAYER, trigger="email", status="completed") == 1
        assert cap.total(sc.EXECUTIONS_FINISHED.name) == 1
        assert v(sc.EXECUTIONS_PENDING.name, agent=PAYER, reason="approval") == 0
        assert v(PENDING_COUNT, agent=PAYER, reason="approval") == 1
        assert v(sc.TOOL_CALLS.name, agent=PAYER, tool="pay", outcome="success") == 1
        assert cap.total(sc.TOKENS.name, type="input") == 130 and cap.total(sc.TOKENS.name, type="output") == 30
        row = _row(cap, "pay-1")
        assert row["status"] == "completed" and row["input_tokens"] == 130
        assert 0 < float(row["runtime_seconds"]) < WAIT  # type: ignore[arg-type]
        assert cap.total(sc.EXPORTER_DROPPED.name) == 0


@pytest.mark.servers
def test_langgraph_wait_as_a_real_prometheus_scrapes_it(
    prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    """Prometheus's own query API: while parked, started 1, finished none, pending 1; after the resume,
    started 1, completed 1, failed none, pending 0, one wait observed."""
    from tests.frameworks.hitl import GRAPH_NAME, langgraph_resume, langgraph_start

    port = free_port()
    tp = TracerProvider()
    store = f"sqlite:///{tmp_path / 't.db'}"
    with testing.capture(
        span_metrics=True, tracer_provider=tp, task_store=store, metrics_port=port, metrics_addr="127.0.0.1"
    ) as cap:
        prom = prometheus_factory(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
            }
        )
        up = f'up{{job="{sc.SCRAPE_JOB}"}}'
        prom.wait_for(lambda: prom.query_value(up) == 1, timeout=30)

        def scraped_after(t: float) -> None:
            """Wait for a scrape that began after `t`: from then on Prometheus holds what the process held."""
            prom.wait_for(lambda: (prom.query_value(f"timestamp({up})") or 0) > t + 0.1, timeout=15)

        a = f'agent="{GRAPH_NAME}"'
        started = f'sum(agent_executions_started_total{{{a},trigger="email"}})'
        finished = f"sum(agent_executions_finished_total{{{a}}}) or vector(0)"
        completed = f'sum(agent_executions_finished_total{{{a},trigger="email",status="completed"}})'
        failed = f'sum(agent_executions_finished_total{{{a},status="failed"}}) or vector(0)'
        pending = f'sum(agent_executions_pending{{{a},reason="approval"}})'
        waits = f'sum(agent_execution_pending_duration_seconds_count{{{a},reason="approval"}}) or vector(0)'

        with exporter.task(trigger="email", task_id="inv-live"):
            out, saver = langgraph_start("inv-live", tp, "openinference")
        assert "__interrupt__" in out
        scraped_after(time.time())  # scraped while parked
        parked = {q: prom.query_value(q) for q in (started, finished, pending, waits)}
        assert parked == {started: 1.0, finished: 0.0, pending: 1.0, waits: 0.0}
        assert _row(cap, "inv-live")["status"] == "pending"

        with exporter.task(trigger="email", task_id="inv-live"):
            done = langgraph_resume("inv-live", tp, "openinference", saver=saver)
        assert done["done"] == "paid"
        scraped_after(time.time())
        resumed = {q: prom.query_value(q) for q in (started, completed, finished, failed, pending, waits)}
        assert resumed == {started: 1.0, completed: 1.0, finished: 1.0, failed: 0.0, pending: 0.0, waits: 1.0}
        assert _row(cap, "inv-live")["status"] == "completed"
