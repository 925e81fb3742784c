"""The docs, the README and the constants module agree; the README's example runs as written."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import exporter
from exporter import semconv as sc

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
TELEMETRY = (ROOT / "docs" / "telemetry.md").read_text()


def metric_rows(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """`| `name` | type | labels | ... |` rows of a markdown table of metrics."""
    rows = {}
    for m in re.finditer(r"^\| `(agent_[a-z_]+)` \| (counter|gauge|histogram) \| ([a-z_, ]+) \|", text, re.M):
        rows[m.group(1)] = (m.group(2), tuple(x.strip() for x in m.group(3).split(",")))
    return rows


EXPECTED = {m.name: (m.type, m.labels) for m in sc.METRICS}


@pytest.mark.parametrize("doc", ["docs/telemetry.md", "README.md"])
def test_metric_tables_match_the_constants(doc):
    """Each metrics table lists exactly the constants' metrics, with their types and labels."""
    assert metric_rows((ROOT / doc).read_text()) == EXPECTED


@pytest.mark.parametrize("doc", ["docs/telemetry.md", "README.md"])
def test_every_span_attribute_and_event_is_documented(doc):
    """Every span attribute, event and event attribute constant appears in the docs."""
    text = (ROOT / doc).read_text()
    names = (*sc.SPAN_ATTRIBUTES, *sc.EVENTS, *sc.EVENT_ATTRIBUTES)
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing


@pytest.mark.parametrize("doc", ["docs/telemetry.md", "README.md"])
def test_docs_name_no_metric_or_attribute_the_code_lacks(doc):
    """No backticked agent_* metric or task.* / gen_ai.* attribute in the docs is unknown to the code."""
    text = (ROOT / doc).read_text()
    series = {s for spec in sc.METRICS for s in (spec.name, *sc.exposed_series_names(spec))}
    keywords = set(inspect.signature(exporter.configure).parameters)  # e.g. `agent_version`
    metrics = set(re.findall(r"`(agent_[a-z_]+)(?:\{[^`]*\})?`", text)) - {"agent_exporter"} - keywords
    assert metrics <= series, metrics - series
    known = {*sc.SPAN_ATTRIBUTES, *sc.EVENT_ATTRIBUTES, *sc.EVENTS, *sc.READ_ATTRIBUTES}
    attrs = set(re.findall(r"`((?:task|gen_ai)\.[a-z_.]+)`", text))
    assert attrs <= known, attrs - known


def test_drop_reasons_log_events_and_alerts_are_documented():
    """Every drop reason, log event and alert name is in docs/telemetry.md."""
    names = [r.value for r in sc.DropReason]
    names += [v for k, v in vars(sc).items() if k.startswith("LOG_") and isinstance(v, str)]
    names += list(sc.ALERTS)
    missing = [n for n in names if f"`{n}`" not in TELEMETRY]
    assert not missing


def test_objective_defaults_are_documented():
    """The objectives table gives the constants' defaults."""
    for name, default in sc.DEFAULT_OBJECTIVES.items():
        assert re.search(rf"^\| `{name}` \| {default:g} \|", TELEMETRY, re.M), name


def test_ci_runs_the_readme_test_command():
    """.ci/run runs exactly the README's test command."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_ci_lints_first_and_kills_nothing_by_name():
    """.ci/run runs ruff and mypy before the tests, and stops no process by name."""
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    order = [next(i for i, c in enumerate(commands) if tool in c) for tool in ("ruff check", "mypy", "pytest")]
    assert order == sorted(order)
    assert not re.search(r"\b(pkill|killall)\b", "\n".join(commands))


def test_readme_example_runs_as_written(tmp_path):
    """The README's instrumentation example runs as written and records what it says."""
    section = README.split("## Instrument your agent", 1)[1]
    code = re.search(r"```python\n(.*?)\n```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 16
    epilogue = textwrap.dedent(
        """
        reg = exporter.registry()
        def v(name, **labels):
            return reg.get_sample_value(name, labels) or 0.0
        print("completed", v("agent_executions_finished_total", agent="invoice", trigger="email",
                              status="completed"))
        print("steps", v("agent_steps_total", agent="invoice",
                         step="Extract the Required Information from the Invoice", status="passed"))
        print("tokens", v("agent_tokens_total", agent="invoice",
                          step="Extract the Required Information from the Invoice", type="input"))
        print("branch", v("agent_branch_decisions_total", agent="invoice", step="Route by amount",
                          path="auto-approve"))
        """
    )
    script = tmp_path / "example.py"
    script.write_text(code + "\n" + epilogue)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split() for line in proc.stdout.splitlines() if line.split()[0] in
               {"completed", "steps", "tokens", "branch"})
    assert out == {"completed": "1.0", "steps": "1.0", "tokens": "812.0", "branch": "1.0"}


def test_tests_that_start_servers_must_be_marked(tmp_path):
    """An unmarked test that starts a server binary or asks for a server fixture fails; marked ones pass."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.servers", "tests.marks"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    servers: starts a real server binary\n")
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(
        """
        import contextlib, subprocess, sys
        import pytest

        def run(program, **kwargs):
            with contextlib.suppress(OSError):  # the binary need not be installed: starting it is the offence
                subprocess.run(program, capture_output=True, timeout=30, **kwargs)

        def test_unmarked_starts_promtool():
            run(["promtool", "--version"])

        def test_unmarked_hands_a_script_the_binary():
            run([sys.executable, "-c", "pass"], env={"ALERTMANAGER_BIN": "/usr/bin/prometheus-alertmanager"})

        def test_unmarked_uses_a_server_fixture(prometheus_factory):
            pass

        @pytest.mark.servers
        def test_marked_starts_promtool():
            run(["/usr/bin/promtool", "--version"])

        def test_offline_runs_python():
            run([sys.executable, "-c", "pass"])
        """
    ))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    flagged = set(re.findall(r"^test_sample\.py::(\w+) (?:starts|uses) .* not marked `servers`", proc.stdout, re.M))
    assert flagged == {
        "test_unmarked_starts_promtool",
        "test_unmarked_hands_a_script_the_binary",
        "test_unmarked_uses_a_server_fixture",
    }, proc.stdout
    assert re.search(r"\b3 errors\b", proc.stdout) and " failed" not in proc.stdout, proc.stdout


FRAMEWORK_APP = """
import logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
import exporter
{configure}
from pydantic_ai import Agent
Agent.instrument_all()
from pydantic_ai.models.test import TestModel
Agent(TestModel(), name="weather").run_sync("What is the weather in Paris?")
time.sleep({wait})
from exporter.testing import metric_total
print("finished", metric_total(exporter.registry(), "agent_executions_finished_total"))
"""


def framework_section() -> tuple[str, str]:
    """The README's framework configure() line (port left to the test) and the prose after its code."""
    section = README.split("\n## Framework agents\n", 1)[1].split("\n## ", 1)[0]
    lead, code, after = re.split(r"```python\n(.*?)\n```", section, maxsplit=1, flags=re.S)
    line = next(c for c in code.splitlines() if c.startswith("exporter.configure("))
    assert "span_metrics=True" in line and "set_global_tracer_provider=True" in line
    assert "`set_global_tracer_provider=True`" in lead  # the form that works comes first
    return line[:-1] + ", metrics_port=None)", after.strip().split("\n\n", 1)[0]


def run_framework_app(tmp_path: Path, configure: str, wait: float) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("pydantic_ai")
    script = tmp_path / "agent.py"
    script.write_text(FRAMEWORK_APP.format(configure=configure, wait=wait))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_readme_framework_configuration_counts_a_pydantic_ai_run(tmp_path: Path) -> None:
    """The README's framework configure() line, then Agent.instrument_all(): the run is one execution."""
    configure, _ = framework_section()
    proc = run_framework_app(tmp_path, configure, 0)
    assert "finished 1.0" in proc.stdout, proc.stdout + proc.stderr


def test_readme_says_what_span_metrics_alone_does_and_the_warning_it_gives(tmp_path: Path) -> None:
    """span_metrics=True alone counts zero executions and warns with the words the README quotes."""
    configure, otherwise = framework_section()
    assert "zero executions" in otherwise
    bare = configure.replace(", set_global_tracer_provider=True", "")
    proc = run_framework_app(tmp_path, bare, 6.0)  # the warning comes after a 5 s grace
    assert "finished 0.0" in proc.stdout
    quoted = [q for q in re.findall(r"`([^`]+)`", otherwise) if len(q) > 25]
    assert len(quoted) == 2 and all(q in proc.stderr for q in quoted), (quoted, proc.stderr)
