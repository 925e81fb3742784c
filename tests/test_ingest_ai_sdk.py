"""Issue 25: Vercel AI SDK agents (npm `ai` 7 and its mock model) through OTLP ingest, in both span formats.

tests/node/ai_sdk.mjs runs five calls (generateText and streamText with a tool, generateObject,
streamObject, a generateText whose tool throws) traced by `@ai-sdk/otel`'s `OpenTelemetry` (v7, GenAI
spans) or `LegacyOpenTelemetry` (the `ai.*` spans of AI SDK <= 6), and sends them over OTLP/HTTP.
Both formats must give the same exact executions, tool calls, tokens and task rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter import semconv as sc

NODE_DIR = Path(__file__).parent / "node"


def _node() -> str:
    """node with the AI SDK packages of tests/node; skip locally, fail under CI, when missing."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node not installed (apt-get install nodejs npm)"
    elif (
        not (NODE_DIR / "node_modules" / "ai").is_dir() or not (NODE_DIR / "node_modules" / "@ai-sdk" / "otel").is_dir()
    ):
        missing = "tests/node packages not installed: npm ci --prefix tests/node"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    assert node is not None
    return node


@pytest.mark.parametrize("fmt", ["v7", "legacy"])
def test_ai_sdk_runs_through_ingest_are_exact_executions_tools_and_tokens(fmt: str, tmp_path: Path) -> None:
    """functionId names the agent, the runtime context gives trigger and task id; a throwing tool the
    model recovers from is a tool error in a completed run; only model-call spans' usage counts."""
    from exporter.ingest.service import IngestService, IngestSettings
    from exporter.tasks.query import get_task

    node = _node()
    registry = CollectorRegistry()
    settings = IngestSettings(port=0, metrics_port=None, grace=0.2, task_store=f"sqlite:///{tmp_path / 't.db'}")
    svc = IngestService(settings, registry=registry).start()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    try:
        done = subprocess.run(
            [node, "ai_sdk.mjs", f"http://127.0.0.1:{svc.port}/v1/traces", fmt],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        svc.derive(everything=True)
        inv, ext = {"agent": "invoice-agent"}, {"agent": "extractor"}
        counts = {
            "started invoice": value(sc.EXECUTIONS_STARTED.name, **inv, trigger="email"),
            "completed invoice": value(sc.EXECUTIONS_FINISHED.name, **inv, trigger="email", status="completed"),
            # generateObject / streamObject take no runtime context: no trigger given
            "started extractor": value(sc.EXECUTIONS_STARTED.name, **ext, trigger="unknown"),
            "completed extractor": value(sc.EXECUTIONS_FINISHED.name, **ext, trigger="unknown", status="completed"),
            "lookup ok": value(sc.TOOL_CALLS.name, **inv, tool="lookup", outcome="success"),
            "lookup error": value(sc.TOOL_CALLS.name, **inv, tool="lookup", outcome="error"),
            "steps invoice": value(sc.STEPS.name, **inv, step="chat mock-invoice-v1", status="passed"),
            "steps extractor": value(sc.STEPS.name, **ext, step="chat mock-extract-v1", status="passed"),
            "in invoice": value(sc.TOKENS.name, **inv, step="chat mock-invoice-v1", type="input"),
            "out invoice": value(sc.TOKENS.name, **inv, step="chat mock-invoice-v1", type="output"),
            "in extractor": value(sc.TOKENS.name, **ext, step="chat mock-extract-v1", type="input"),
            "out extractor": value(sc.TOKENS.name, **ext, step="chat mock-extract-v1", type="output"),
        }
        assert counts == {
            "started invoice": 3, "completed invoice": 3, "started extractor": 2, "completed extractor": 2,
            "lookup ok": 2, "lookup error": 1, "steps invoice": 6, "steps extractor": 2,
            "in invoice": 130 + 130 + 40 + 60, "out invoice": 30 + 30 + 8 + 12, "in extractor": 60, "out extractor": 10,
        }  # fmt: skip

        def total(name: str) -> float:
            return sum(s.value for f in registry.collect() for s in f.samples if s.name == name)

        assert total(sc.EXECUTIONS_STARTED.name) == 5  # nothing under another label
        assert total(sc.EXECUTION_FAILURES.name) == 0 and total(sc.EXPORTER_DROPPED.name) == 0
        assert svc.tasks is not None and svc.tasks.flush(5)
        for task_id in ("gt-1", "st-1", "gt-2"):
            row = svc.tasks.read(lambda b, t=task_id: get_task(b, t))
            assert row is not None and (row["status"], row["agent"], row["trigger"]) == (
                "completed", "invoice-agent", "email",
            )  # fmt: skip
    finally:
        svc.stop()
