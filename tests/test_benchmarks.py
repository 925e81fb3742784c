"""The benchmark command keeps working (a smoke run at tiny sizes; nothing here is timed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = (
    "## Targets",
    "## 1. Per-execution overhead",
    "## 2. A peer: OpenLLMetry (traceloop-sdk)",
    "## 3. Backend down or slow",
    "## 4. Memory",
    "## 5. Exposition",
    "## 6. Concurrency",
    "## 7. Framework spans to metrics",
    "## 8. Export paid",
    "## 9. Task store: agent-thread cost",
    "## 10. Task store: sustained executions/s",
)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python3 -m module args` from the repository root, its output captured."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_smoke_run_prints_and_writes_every_section(tmp_path: Path) -> None:
    """`python3 -m benchmarks --smoke` exits 0 and prints and writes a table for every section."""
    out = tmp_path / "performance.md"
    proc = run_module("benchmarks", "--smoke", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = out.read_text()
    for text in (proc.stdout, doc):
        for heading in SECTIONS:
            assert heading in text
    assert "CPU:" in doc and "Python:" in doc and "Date:" in doc
    for row in (
        "**agent-exporter**",
        "| agent-exporter | down |",
        "| agent-exporter | slow |",
        "threads × 8",
        "asyncio",
        "`sample_healthy=0.1`",
        "spans delivered / made (dropped)",
        "| SQLite | spans made |",
        "| SQLite, one file | 2 processes, unpaced |",
    ):
        assert row in doc
    # every section has a table
    assert doc.count("|---|") >= len(SECTIONS)


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.timeout(240)
def test_task_store_sections_run_against_postgresql() -> None:
    """`python3 -m benchmarks.tasks --section smoke --postgres` measures PostgreSQL too (rows, not timings)."""
    from tests.postgres import postgres_bin

    postgres_bin("postgres")  # skips without the binaries (fails under CI)
    pytest.importorskip("psycopg")
    proc = run_module("benchmarks.tasks", "--section", "smoke", "--postgres")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## 9. Task store: agent-thread cost" in out and "## 10. Task store: sustained executions/s" in out
    for store in ("SQLite", "PostgreSQL"):
        assert f"| {store} | spans made |" in out
        assert f"| {store} | paced at 100/s |" in out
    assert "not run" not in out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cost_benchmark_prints_each_ratio_and_drops_nothing() -> None:
    """`python3 -m benchmarks.cost` at tiny sizes: the per-call figures, then cost on / cost off per
    way of tracing, for the agent thread and the process, in fresh processes (no span dropped by the
    export queue) and in one process with prices switched on and off."""
    proc = run_module("benchmarks.cost", "--rounds", "1", "--calls", "500", "--executions", "200", "--samples", "2",
                      "--per-sample", "20")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "with a model and a price: +" in out
    for mode in ("spans exported to a local sink", "spans made, not exported", "tracing off"):
        assert mode in out
    assert out.count("cost on / cost off: ") == 6 + 6, out  # part 2: 3 ways x 2 CPUs; part 3 the same
    drops = [line for line in out.splitlines() if "dropped (agent_exporter_dropped_total" in line]
    assert len(drops) == 3 and all(line.count(": 0.0") == 3 for line in drops), drops
