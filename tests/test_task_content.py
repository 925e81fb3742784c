"""A task's input, output and steps (issue 26): on the execution span, in the task store, and
printed whole by `agent-exporter tasks --show`. SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.instrument import noop
from exporter.tasks.backend import Backend
from exporter.tasks.query import show_task

ROOT = Path(__file__).resolve().parent.parent


def invoice(task_id: str = "T-1") -> None:
    with exporter.execution("invoice", "email", task_id=task_id, steps=3) as run:
        run.record_input({"invoice": 42, "api_key": "sk-abcdefghijklmnopqrstuvwxyz123456"})
        with run.step("extract", tool="gpt") as step:
            step.evaluate("accuracy", 0.9)
            step.record_usage(100, 20)
            with step.tool_call("ocr"):
                pass
        with run.step("route") as step:
            step.branch("manual_review", ["auto_approve"])
        with run.step("validate") as step:
            step.evaluate("total_matches", passed=False)
            with pytest.raises(ValueError), step.tool_call("erp"):
                raise ValueError("erp down")
        run.record_output({"total": 1200})


def test_input_and_output_are_on_the_execution_span_masked() -> None:
    """record_input / record_output set task.input / task.output on the execution span, secrets masked."""
    with testing.capture() as cap:
        invoice()
    (span,) = [s for s in cap.spans() if s.name.startswith("invoke_workflow")]
    attrs = span.attributes or {}
    assert json.loads(str(attrs[sc.ATTR_TASK_INPUT])) == {"invoice": 42, "api_key": "[REDACTED]"}
    assert json.loads(str(attrs[sc.ATTR_TASK_OUTPUT])) == {"total": 1200}


def test_input_recorded_before_enter_reaches_the_span_and_is_bounded() -> None:
    """Recorded before the span starts, the input is set when it starts; it is truncated like a step's."""
    with testing.capture(max_content_bytes=64) as cap:
        run = exporter.execution("a")
        run.record_input("x" * 500)
        with run:
            pass
    (span,) = cap.spans()
    text = str((span.attributes or {})[sc.ATTR_TASK_INPUT])
    assert len(text.encode()) <= 64 and "truncated" in text
    assert cap.value("agent_exporter_dropped_total", reason="content_truncated") == 1


def test_nothing_is_captured_when_capture_content_is_off(tmp_path: Path) -> None:
    """capture_content=False: no task.input on the span and none in the store."""
    url = f"sqlite:///{tmp_path / 't.db'}"
    with testing.capture(capture_content=False, task_store=url) as cap:
        invoice()
        assert exporter.flush(10)
    (span,) = [s for s in cap.spans() if s.name.startswith("invoke_workflow")]
    assert sc.ATTR_TASK_INPUT not in (span.attributes or {})
    backend = Backend(url)
    task = show_task(backend, "T-1")
    backend.close()
    assert task is not None and task["input"] is None and task["output"] is None


def test_unconfigured_record_input_and_output_do_nothing() -> None:
    """The no-op execution has record_input / record_output too."""
    run = exporter.execution("a")
    assert run is noop.NOOP_EXECUTION
    with run:
        assert run.record_input({"a": 1}) is None and run.record_output("x") is None


def test_the_store_keeps_input_output_and_each_step(store_url: str, store: Backend) -> None:
    """The row has input and output; the steps table has each step with its criteria, tools and branch."""
    exporter.configure("t", metrics_port=None, tracing=False, task_store=store_url)
    invoice()
    assert exporter.flush(10)
    task = show_task(store, "T-1")
    assert task is not None
    assert json.loads(task["input"]) == {"invoice": 42, "api_key": "[REDACTED]"}
    assert json.loads(task["output"]) == {"total": 1200}
    steps = [
        (s["step_index"], s["name"], s["status"], s["score"], s["evaluations"], s["tool_calls"], s["branch"])
        for s in task["steps"]
    ]
    assert [s[:4] for s in steps] == [
        (1, "extract", "passed", pytest.approx(0.9)),
        (2, "route", "passed", None),
        (3, "validate", "failed", None),
    ]
    assert steps[0][4] == [{"name": "accuracy", "result": "pass", "score": pytest.approx(0.9)}]
    assert [(c["tool"], c["outcome"]) for c in steps[0][5]] == [("ocr", "success")]
    assert steps[1][6] == "manual_review"
    assert steps[2][4] == [{"name": "total_matches", "result": "fail", "score": None}]
    assert [(c["tool"], c["outcome"]) for c in steps[2][5]] == [("erp", "error")]
    assert all(s["runtime_seconds"] >= 0 for s in task["steps"])


def test_steps_are_bounded_per_execution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_STEPS_KEPT steps an execution's further steps are counted, not stored."""
    from exporter.tasks import fold

    monkeypatch.setattr(fold, "MAX_STEPS_KEPT", 5)
    url = f"sqlite:///{tmp_path / 't.db'}"
    exporter.configure("t", metrics_port=None, tracing=False, task_store=url)
    with exporter.execution("a", task_id="T-9") as run:
        for i in range(8):
            with run.step(f"s{i}"):
                pass
    assert exporter.flush(10)
    backend = Backend(url)
    task = show_task(backend, "T-9")
    backend.close()
    assert task is not None and task["steps_done"] == 8 and len(task["steps"]) == 5


def test_tasks_show_prints_the_task_whole(store_url: str) -> None:
    """`tasks --show ID`: header (status, step k of n, runtime, tokens, trace), input, output, steps."""
    exporter.configure("t", metrics_port=None, tracing=False, task_store=store_url)
    invoice()
    assert exporter.flush(10)
    exporter.shutdown()
    out = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "tasks", "--store", store_url, "--show", "T-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "status   completed" in text and "step 3 of 3" in text and "100 in, 20 out" in text
    assert "trace    none" in text  # tracing off: no trace, and the header says so
    assert '"invoice": 42' in text and "[REDACTED]" in text and '"total": 1200' in text
    assert text.index("1. extract") < text.index("2. route") < text.index("3. validate")
    assert "criterion total_matches: fail" in text and "tool erp: error" in text
    assert "branch taken: manual_review" in text
    missing = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "tasks", "--store", store_url, "--show", "NOPE"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert missing.returncode == 1 and "no task 'NOPE'" in missing.stderr
