"""Acceptance: a Node.js agent (the OpenTelemetry JS SDK) → `agent-exporter ingest` → a real Prometheus,
and every span on to a downstream OTLP sink.

The client is tests/node/send.mjs with the pinned packages of tests/node/package.json
(`.ci/run` installs them with `npm ci`); without node or its packages the test skips locally
and fails under CI.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import semconv as sc
from tests.servers import OtlpReceiver, PrometheusServer, wait_until

NODE_DIR = Path(__file__).parent / "node"

pytestmark = pytest.mark.servers


def _node() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node not installed (apt-get install nodejs npm)"
    elif not (NODE_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir():
        missing = "tests/node packages not installed: npm ci --prefix tests/node"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    assert node is not None
    return node


@pytest.fixture
def ingest_cli(otlp_receiver: OtlpReceiver, tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    """`agent-exporter ingest` as a process forwarding to the sink, with a token: (port, metrics port, token)."""
    token = "node-test-token"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "ingest", "--port", "0", "--metrics-port", "0",
         "--forward", otlp_receiver.endpoint, "--token-file", str(token_file), "--grace", "0.5"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "OTLP on" in line, line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        metrics_port = int(line.split("/metrics on 127.0.0.1:")[1].split(",")[0])
        yield port, metrics_port, token
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_node_agent_metrics_on_a_real_scrape_and_spans_downstream(
    ingest_cli: tuple[int, int, str],
    otlp_receiver: OtlpReceiver,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    """Success, tool error, failure and an evaluation from Node.js give exact metrics in Prometheus;
    every span the client made arrives at the next hop."""
    node = _node()
    port, metrics_port, token = ingest_cli
    prom = prometheus_factory({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    })  # fmt: skip
    prom.wait_for(lambda: prom.query_value(f'up{{job="{sc.SCRAPE_JOB}"}}') == 1, timeout=30)
    done = subprocess.run(
        [node, "send.mjs", f"http://127.0.0.1:{port}/v1/traces", token],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ids = set(json.loads(done.stdout)["spans"])
    assert len(ids) == 4 * 4

    got = otlp_receiver.wait_for_spans(len(ids), timeout=20)
    assert {s.span_id for s in got} == ids
    assert all(s.resource_attributes.get("service.name") == "node-agent" for s in got)

    a = 'agent="node-billing",trigger="webhook"'
    expected = {
        f"agent_executions_started_total{{{a}}}": 4,
        f'agent_executions_finished_total{{{a},status="completed"}}': 2,
        f'agent_executions_finished_total{{{a},status="failed"}}': 2,
        f'agent_execution_failures_total{{{a},cause="tool_error"}}': 1,
        f'agent_execution_failures_total{{{a},cause="timeout"}}': 1,
        'agent_tool_calls_total{agent="node-billing",tool="lookup",outcome="success"}': 3,
        'agent_tool_calls_total{agent="node-billing",tool="lookup",outcome="error"}': 1,
        'agent_steps_total{agent="node-billing",step="chat plan",status="passed"}': 4,
        'agent_tokens_total{agent="node-billing",step="chat answer",type="input"}': 4 * 2000,
        'agent_llm_tokens_total{agent="node-billing",provider="openai",model="gpt-4o-mini",type="cache_read"}': 4096,
        'agent_llm_tokens_total{agent="node-billing",provider="anthropic",model="claude-sonnet-4-5",'
        'type="cache_write"}': 6000,
        'agent_llm_tokens_total{agent="node-billing",type="input"}': 4 * 3200,  # the root's totals not added
        'agent_llm_calls_total{agent="node-billing",outcome="success"}': 8,
        'agent_evaluations_total{agent="node-billing",step="execution",evaluation="relevance",result="pass"}': 1,
        f"agent_execution_evaluation_score_count{{{a}}}": 1,
        "agent_ingest_spans_received_total": 16,
        'agent_ingest_forward_spans_total{outcome="sent"}': 16,
    }

    def scraped() -> dict[str, float | None]:
        return {q: prom.query_value(f"sum({q})") for q in expected}

    last = wait_until(lambda: (v := scraped()) == expected and v, timeout=30, describe=lambda: str(scraped()))
    assert last == expected
    assert prom.query_value('agent_ingest_requests_total{code="401"}') in (None, 0)
    # Cost by hand, genai-prices' USD per million tokens (uncached input = input - cache parts):
    # gpt-4o-mini (0.15 in, 0.075 cache read, 0.60 out): 176 x 0.15 + 1,024 x 0.075 + 30 x 0.60 = 121.2
    # claude-sonnet-4-5 (3 in, 3.75 cache write, 15 out): 500 x 3 + 1,500 x 3.75 + 200 x 15 = 10,125
    mini, sonnet = 4 * 121.2e-6, 4 * 10_125e-6
    cost = {
        'agent_cost_usd_total{agent="node-billing",provider="openai",model="gpt-4o-mini"}': mini,
        'agent_cost_usd_total{agent="node-billing",provider="anthropic",model="claude-sonnet-4-5"}': sonnet,
        f"agent_execution_cost_usd_sum{{{a}}}": mini + sonnet,
        f"agent_execution_cost_usd_count{{{a}}}": 4,
    }
    assert {q: prom.query_value(f"sum({q})") for q in cost} == pytest.approx(cost, rel=1e-9)
    assert prom.query_value("sum(agent_llm_unpriced_tokens_total)") in (None, 0)


def _readme_ingest_section() -> tuple[list[str], str]:
    """The README's "Agents in other languages": its service command line and its Node.js snippet."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Agents in other languages", 1)[1].split("\n## ", 1)[0]
    command = section.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    code = section.split("```js\n", 1)[1].split("```", 1)[0]
    return shlex.split(command), code


def test_the_readme_ingest_section_runs_as_written(tmp_path: Path) -> None:
    """The README's service command and Node.js snippet work together (only the ports made free):
    one execution, one step, one failed tool call, three spans, nothing forwarded."""
    node = _node()
    argv, code = _readme_ingest_section()
    assert argv[:2] == ["agent-exporter", "ingest"] and "--forward" not in argv
    port = argv[argv.index("--port") + 1]
    url = f"http://127.0.0.1:{port}/v1/traces"
    assert url in code  # the snippet sends to the service the command starts
    argv[argv.index("--port") + 1] = "0"
    argv[argv.index("--metrics-port") + 1] = "0"
    proc = subprocess.Popen([sys.executable, "-m", "exporter.cli", *argv[1:]], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "OTLP on" in line and "forwarding to nowhere" in line, line
        got_port = int(line.split("127.0.0.1:")[1].split("/")[0])
        metrics_port = int(line.split("/metrics on 127.0.0.1:")[1].split(",")[0])
        script = NODE_DIR / "readme-example.tmp.mjs"
        script.write_text(code.replace(url, f"http://127.0.0.1:{got_port}/v1/traces"))
        try:
            done = subprocess.run(
                [node, script.name], cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            script.unlink()
        assert done.returncode == 0, done.stderr

        def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith(("agent_executions_", "agent_steps_total", "agent_tool_calls_total",
                                           "agent_ingest_spans", "agent_ingest_forward_spans_total"))
                and sample.value and not sample.name.endswith("_created")
            }  # fmt: skip

        a = (("agent", "billing"), ("trigger", "webhook"))
        expected = {
            ("agent_executions_started_total", a): 1.0,
            ("agent_executions_finished_total", (a[0], ("status", "completed"), a[1])): 1.0,
            ("agent_steps_total", (("agent", "billing"), ("status", "passed"), ("step", "chat gpt-4o"))): 1.0,
            ("agent_tool_calls_total", (("agent", "billing"), ("outcome", "error"), ("tool", "lookup_invoice"))): 1.0,
            ("agent_ingest_spans_received_total", ()): 3.0,
        }
        wait_until(lambda: samples() == expected, timeout=20, describe=lambda: str(samples()))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_node_sender_parks_and_resumes_an_execution_with_task_status_waiting(tmp_path: Path) -> None:
    """task.status="waiting" on a Node.js root span parks the execution; the next root with its task.id resumes it."""
    from prometheus_client import CollectorRegistry

    from exporter.ingest.service import IngestService, IngestSettings
    from exporter.tasks.query import get_task

    node = _node()
    registry = CollectorRegistry()
    settings = IngestSettings(port=0, metrics_port=None, grace=0.2, task_store=f"sqlite:///{tmp_path / 't.db'}")
    svc = IngestService(settings, registry=registry).start()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def send(part: str) -> None:
        url = f"http://127.0.0.1:{svc.port}/v1/traces"
        subprocess.run([node, str(NODE_DIR / "wait.mjs"), url, part, "node-w1"], check=True, timeout=60,
                       capture_output=True, cwd=NODE_DIR)  # fmt: skip
        svc.derive(everything=True)

    try:
        agent = {"agent": "node-billing"}
        send("waiting")
        assert value(sc.EXECUTIONS_STARTED.name, **agent, trigger="webhook") == 1
        assert value(sc.EXECUTIONS_PENDING.name, **agent, reason="approval") == 1
        assert value(sc.EXECUTIONS_FINISHED.name, **agent, trigger="webhook", status="completed") == 0
        assert svc.tasks is not None and svc.tasks.flush(5)
        assert svc.tasks.read(lambda b: get_task(b, "node-w1"))["status"] == "pending"
        send("resume")
        assert value(sc.EXECUTIONS_STARTED.name, **agent, trigger="webhook") == 1
        assert value(sc.EXECUTIONS_FINISHED.name, **agent, trigger="webhook", status="completed") == 1
        assert value(sc.EXECUTIONS_PENDING.name, **agent, reason="approval") == 0
        assert value(sc.EXECUTION_PENDING_DURATION.name + "_count", **agent, reason="approval") == 1
        assert value(sc.TOKENS.name, **agent, step="chat plan", type="input") == 200
        assert svc.tasks.flush(5)
        row = svc.tasks.read(lambda b: get_task(b, "node-w1"))
        assert row["status"] == "completed" and row["input_tokens"] == 200
    finally:
        svc.stop()
