"""Framework runs that stop for a human (issue 25): one execution that waits, then resumes by task id."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.pipeline.events import ExecutionFinished, ExecutionSuspended
from exporter.spans import waits
from exporter.spans.mapping import assemble, summarize
from exporter.tasks.query import get_task

ROOT = Path(__file__).resolve().parent.parent
OP = sc.ATTR_GEN_AI_OPERATION_NAME
PENDING_COUNT = sc.EXECUTION_PENDING_DURATION.name + "_count"


def _run(tp: TracerProvider, *, waiting: bool = False, reason: str | None = None, fail: bool = False) -> None:
    """A GenAI agent run (agent > chat); `waiting`: its root says it stopped for a human."""
    tracer = tp.get_tracer("some.framework")
    with tracer.start_as_current_span("invoke_agent payer", attributes={OP: "invoke_agent"}) as root:
        root.set_attribute(sc.ATTR_GEN_AI_AGENT_NAME, "payer")
        with tracer.start_as_current_span("chat m", attributes={OP: "chat"}) as chat:
            chat.set_attributes({sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: 5, sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: 1})
        if waiting:
            root.set_attribute(sc.ATTR_TASK_STATUS, sc.TASK_STATUS_WAITING)
        if reason is not None:
            root.set_attribute(sc.ATTR_TASK_WAITING_REASON, reason)
        if fail:
            root.set_status(Status(StatusCode.ERROR, "boom"))


def _one(name: str, attrs: dict[str, object], *, error: bool = False, events: tuple = ()) -> object:
    return summarize(1, None, name, attrs, "x", error, None, list(events), 0, 2_000_000_000)


def test_root_span_waiting_ends_in_suspension_with_its_runtime():
    """task.status="waiting" on the execution's span: ExecutionSuspended (reason, runtime), no finish."""
    root = _one("invoke_agent a", {OP: "invoke_agent", sc.ATTR_TASK_STATUS: "waiting"})
    events = assemble([root], trace_id="t", exemplar=None)  # type: ignore[list-item]
    assert not [e for e in events if isinstance(e, ExecutionFinished)]
    (s,) = [e for e in events if isinstance(e, ExecutionSuspended)]
    assert (s.reason, s.active) == ("approval", 2.0)


def test_waiting_reason_outside_the_closed_set_falls_back_to_approval():
    """A task.waiting_reason that is not a pending reason reads as approval."""
    root = _one("a", {OP: "invoke_agent", sc.ATTR_TASK_STATUS: "waiting", sc.ATTR_TASK_WAITING_REASON: "lunch"})
    events = assemble([root], trace_id="t", exemplar=None)  # type: ignore[list-item]
    assert [e.reason for e in events if isinstance(e, ExecutionSuspended)] == ["approval"]


def test_langgraph_interrupt_is_a_wait_not_a_failure():
    """OpenLLMetry's ERROR node span with error.type GraphInterrupt: the run waits, nothing failed."""
    root = summarize(1, None, "invoke_agent g", {OP: "invoke_agent"}, "x", False, None, [], 0, 10)
    node = summarize(
        2, 1, "execute_task approve", {OP: "execute_task", sc.ATTR_ERROR_TYPE: "GraphInterrupt"}, "x",
        True, "(Interrupt(...),)", [("exception", {"exception.type": "langgraph.errors.GraphInterrupt"})], 1, 9,
    )  # fmt: skip
    assert node.error is None and node.waiting == "approval"
    events = assemble([root, node], trace_id="t", exemplar=None)
    assert [type(e).__name__ for e in events] == ["ExecutionStarted", "ExecutionSuspended"]


def test_wait_then_resume_in_process_is_one_execution():
    """Parked: started 1, pending 1, store pending; resumed: finished 1, pending 0, one wait observed."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        with exporter.task(trigger="email", task_id="inv-1"):
            _run(tp, waiting=True)
        assert cap.value("agent_executions_started_total", agent="payer", trigger="email") == 1
        assert cap.total("agent_executions_finished_total") == 0
        assert cap.value("agent_executions_pending", agent="payer", reason="approval") == 1
        with exporter.task(trigger="email", task_id="inv-1"):
            _run(tp)
        assert cap.value("agent_executions_started_total", agent="payer", trigger="email") == 1
        assert cap.value("agent_executions_finished_total", agent="payer", trigger="email", status="completed") == 1
        assert cap.value("agent_executions_pending", agent="payer", reason="approval") == 0
        assert cap.value(PENDING_COUNT, agent="payer", reason="approval") == 1
        assert cap.total("agent_tokens_total") == 12  # both runs' model calls


def test_a_run_without_the_same_task_id_or_agent_does_not_resume():
    """Another task id (or none) is a new execution; the wait stays parked."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        with exporter.task(trigger="email", task_id="inv-1"):
            _run(tp, waiting=True)
        with exporter.task(trigger="email", task_id="inv-2"):
            _run(tp)
        _run(tp)
        assert cap.total("agent_executions_started_total") == 3
        assert cap.total("agent_executions_finished_total") == 2
        assert cap.value("agent_executions_pending", agent="payer", reason="approval") == 1


def test_resume_that_fails_ends_the_execution_failed_and_a_second_wait_parks_again():
    """A wait resumed twice: wait, wait again, then a failure; started once, failed once, two waits."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        for waiting in (True, True):
            with exporter.task(trigger="email", task_id="inv-1"):
                _run(tp, waiting=waiting)
        assert cap.value("agent_executions_pending", agent="payer", reason="approval") == 1
        with exporter.task(trigger="email", task_id="inv-1"):
            _run(tp, fail=True)
        assert cap.total("agent_executions_started_total") == 1
        assert cap.value("agent_executions_finished_total", agent="payer", trigger="email", status="failed") == 1
        assert cap.value(PENDING_COUNT, agent="payer", reason="approval") == 2
        assert cap.value("agent_executions_pending", agent="payer", reason="approval") == 0


def test_resume_in_another_process_through_the_task_store(tmp_path: Path):
    """A wait parked by one runtime is resumed by the next one with the same store: one execution."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=url) as cap:
        with exporter.task(trigger="email", task_id="inv-9"):
            _run(tp, waiting=True, reason="queued")
        assert cap.value("agent_executions_pending", agent="payer", reason="queued") == 1
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=url) as cap:
        assert cap.state.tasks.read(lambda b: get_task(b, "inv-9"))["status"] == "pending"
        with exporter.task(trigger="email", task_id="inv-9"):
            _run(tp)
        assert cap.total("agent_executions_started_total") == 0  # counted by the first process
        assert cap.value("agent_executions_finished_total", agent="payer", trigger="email", status="completed") == 1
        assert cap.value(PENDING_COUNT, agent="payer", reason="queued") == 1
        cap.state.tasks.flush(5)
        row = cap.state.tasks.read(lambda b: get_task(b, "inv-9"))
        assert row["status"] == "completed" and row["waiting_since"] is None
        assert row["input_tokens"] == 10  # both parts' model calls, added by the store


# Another process: resumes task `inv-r` through the store, prints what it counted.
_RESUME_ELSEWHERE = """
import sys
from opentelemetry.sdk.trace import TracerProvider
import exporter
from exporter import testing
from tests.test_waits import _run
tp = TracerProvider()
with testing.capture(span_metrics=True, tracer_provider=tp, task_store=sys.argv[1]) as cap:
    with exporter.task(trigger="email", task_id="inv-r"):
        _run(tp)
    cap.state.tasks.flush(5)
    print(cap.total("agent_executions_started_total"), cap.total("agent_executions_finished_total"))
"""


def test_housekeeping_clears_a_wait_another_process_resumed_from_this_gauge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two waits parked here; another process resumes one through the store: the periodic check takes
    that one (only) out of this process's pending gauge, observing no wait here (the resumer did)."""
    monkeypatch.setattr(waits, "RECONCILE_INTERVAL", 0.0)  # check at every housekeeping tick, not every 15 s
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, task_store=url) as cap:
        for task_id in ("inv-r", "inv-s"):
            with exporter.task(trigger="email", task_id=task_id):
                _run(tp, waiting=True)
        cap.state.tasks.flush(5)
        pending = lambda: cap.value("agent_executions_pending", agent="payer", reason="approval")  # noqa: E731
        assert pending() == 2
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-c", _RESUME_ELSEWHERE, url], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.split() == ["0.0", "1.0"]  # started by this process, finished by the other
        deadline = time.monotonic() + 5  # the housekeeping thread ticks about every 0.25 s
        while pending() != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pending() == 1  # inv-s still waits: its row is still pending
        rows = {t: cap.state.tasks.read(lambda b, t=t: get_task(b, t))["status"] for t in ("inv-r", "inv-s")}
        assert rows == {"inv-r": "completed", "inv-s": "pending"}
        assert cap.total(PENDING_COUNT) == 0  # the wait was observed by the process that resumed it
        assert cap.total("agent_executions_finished_total") == 0
        assert cap.total(sc.EXPORTER_DROPPED.name) == 0
