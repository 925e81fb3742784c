"""The demo agent, run natively for a bounded time and scraped by a real Prometheus.

Prometheus gets the compose stack's own configuration (deploy/prometheus/prometheus.yml), with the
stack's host names mapped to 127.0.0.1 ports and 1 s intervals. The scenarios run against the
shipped rules rendered with short windows (alert_rules.render.Params.short).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import semconv
from exporter.demo.agents import BASELINED, SCENARIOS
from tests.servers import PrometheusServer, free_port, missing, wait_until
from tests.test_stack import PROMETHEUS_CONFIG, readme_main_command

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "exporter.cli"]

pytestmark = pytest.mark.servers


def compose_prometheus_config(hosts: dict[str, int]) -> dict[str, Any]:
    """The stack's Prometheus config with `host:port` targets mapped to 127.0.0.1 and 1 s intervals.

    Target groups with a host not in `hosts` (the ingest service's), and jobs left with none (the
    Alertmanager one), are left out.
    """
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config.pop("rule_files", None)
    config.pop("alerting", None)
    jobs = []
    for job in config["scrape_configs"]:
        groups = [sc for sc in job.get("static_configs", [])
                  if sc["targets"] and all(t.split(":")[0] in hosts for t in sc["targets"])]  # fmt: skip
        if groups:
            for sc in groups:
                sc["targets"] = [f"127.0.0.1:{hosts[t.split(':')[0]]}" for t in sc["targets"]]
            job["static_configs"] = groups
            jobs.append(job)
    config["scrape_configs"] = jobs
    return config


class Demo:
    """`agent-exporter demo` as a subprocess in its own process group, output kept in a file."""

    def __init__(self, tmp_path: Path, *args: str, name: str = "demo", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = tmp_path / f"{name}.log"
        argv = [*CLI, "demo", "--port", str(self.port), *args]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**environ, **(env or {})},
            )  # fmt: skip

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as Docker and Ctrl-C do; the demo must exit on its own within `timeout`."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise AssertionError(f"demo did not stop within {timeout}s of SIGTERM\n{self.output()[-3000:]}") from None


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(*args: str, **kw: Any) -> Demo:
        d = Demo(tmp_path, *args, **kw)
        started.append(d)
        wait_until(d.metrics, 15, describe=d.output)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait(5)


def test_demo_help_lists_every_scenario_and_its_alert() -> None:
    """`agent-exporter demo --help` names each scenario and the alert it provokes."""
    env = dict(os.environ, COLUMNS="1000")  # no wrapping inside hyphenated names
    done = subprocess.run([*CLI, "demo", "--help"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for name, (_, alert, _) in SCENARIOS.items():
        assert name in text and alert in text
    assert "default 9464" in text


def test_demo_rejects_an_unknown_scenario() -> None:
    """A typo in --scenario is an argparse error naming the known scenarios."""
    done = subprocess.run([*CLI, "demo", "--scenario", "slow-stpe"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "slow-step" in done.stderr and "degraded-tool" in done.stderr


# --------------------------------------------------------------------------- acceptance 2


def short_rules(tmp_path: Path) -> Path:
    """The shipped rules rendered with 1-minute windows, `for: 0s` and 1 s evaluation."""
    from alert_rules.render import Params, render_rules

    rules = tmp_path / "agent-rules.yml"
    rules.write_text(render_rules(Params.short(window="1m", for_="0s", min_executions=5, interval="1s")))
    return rules


# Alerts the healthy workload must not raise (the scenario ones whose baseline is far from objective).
QUIET = [
    ("AgentToolErrorRateHigh", {"agent": "invoice", "tool": "salesforce"}),
    ("AgentRuntimeHigh", {"agent": "invoice"}),
    ("AgentEvaluationScoreLow", {"agent": "support-email"}),
    ("AgentTasksStuckPending", {"agent": "invoice"}),
]


def test_demo_fills_every_contract_metric_through_the_stacks_scrape_config(
    demo: Callable[..., Demo], prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    """The default workload, scraped with the stack's own job, gives every metric of the contract."""
    # With a task store, as in the stack: its waiting gauges are part of the contract too. They are
    # read every --task-store-refresh seconds: at speed 100 the pending objective is 9 s, so a 15 s
    # old reading would look like a stuck wait.
    store = f"sqlite:///{tmp_path / 'tasks.db'}"
    d = demo("--rate", "40", "--speed", "100", "--duration", "60", "--progress-interval", "2", "--task-store", store,
             "--task-store-refresh", "1")  # fmt: skip
    prom = prometheus_factory(compose_prometheus_config({"demo": d.port}), rule_files=[short_rules(tmp_path)])
    targets = prom.wait_for(lambda: [t for t in prom.targets() if t["health"] == "up"], 15)
    assert [t["labels"]["job"] for t in targets] == [semconv.SCRAPE_JOB]

    def missing() -> list[str]:
        gone = []
        for spec in semconv.METRICS:
            series = spec.name + "_count" if spec.type == "histogram" else spec.name
            if not prom.query(f"{series}{{job='{semconv.SCRAPE_JOB}'}}"):
                gone.append(series)
        return gone

    wait_until(lambda: not missing(), 30, describe=lambda: f"missing: {missing()}\n{d.output()[-2000:]}")
    # What the contract's label values say the workload covers.
    checks = {
        "count by (trigger) (agent_executions_started_total)": {"email", "webhook", "manual", "timer", "api"},
        "count by (cause) (agent_execution_failures_total)": {
            "validation_failure", "tool_error", "missing_data", "timeout", "error",
        },
        "count by (agent) (agent_executions_started_total)": {"invoice", "support-email", "daily-report"},
        "count by (reason) (agent_execution_pending_duration_seconds_count)": {"queued", "approval"},
        "count by (status) (agent_executions_finished_total)": {"completed", "failed", "cancelled"},
        "count by (model) (agent_cost_usd_total)": {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"},
        "count by (model) (agent_llm_unpriced_tokens_total)": {"opus-mt-mul-en"},
        'count by (type) (agent_llm_tokens_total{model="gpt-4o"})': {"input", "output", "cache_read", "cache_write"},
    }  # fmt: skip
    for expr, want in checks.items():
        label = expr.split("(")[1].split(")")[0]

        def values(e: str = expr, lbl: str = label) -> set[str]:
            return {s["metric"][lbl] for s in prom.query(e)}

        wait_until(lambda e=expr, w=want: w <= values(e), 30, describe=lambda e=expr: f"{e}: {values(e)}")
    tools = {s["metric"]["tool"] for s in prom.query("count by (tool) (agent_tool_calls_total)")}
    assert {"gmail", "custom_gpt", "salesforce", "zendesk", "bigquery", "slack"} <= tools
    assert prom.query('agent_steps_total{step="Extract the Required Information from the Invoice"}')
    assert prom.query('agent_branch_decisions_total{step="Route by amount", path="human-approval"}')
    objective = prom.query_value('agent_objective{agent="support-email", objective="completion_ratio"}')
    assert objective == pytest.approx(0.90)
    # Exemplars carry the trace id (OpenMetrics scrape, exemplar storage on).
    now = time.time()
    exemplars = prom.query_exemplars("agent_execution_duration_seconds_bucket", now - 120, now)
    assert any(len(e["labels"].get("trace_id", "")) == 32 for s in exemplars for e in s["exemplars"])
    # The healthy workload, with the same short rules the scenarios fire, stays quiet on them.
    assert prom.query("agent:agent_execution_completion:ratio_rate1m"), "recording rules not evaluated yet"
    firing = _firing(prom)
    for alert, labels in QUIET:
        assert not [f for f in firing if _matches(f, alert, labels)], f"{alert} {labels} fired without a scenario"
    assert d.stop() == 0
    out = d.output()
    assert "progress" in out and "stopped" in out
    assert out.count("execution_finished") == 0  # no line per execution at default verbosity


# --------------------------------------------------------------------------- acceptance 3

# Scenario -> (alert, the labels it must fire with).
INTENDED: dict[str, list[tuple[str, dict[str, str]]]] = {
    "degraded-tool": [("AgentToolErrorRateHigh", {"agent": "invoice", "tool": "salesforce"})],
    "slow-step": [("AgentRuntimeHigh", {"agent": "invoice"})],
    "falling-scores": [("AgentEvaluationScoreLow", {"agent": "support-email"})],
    "approval-backlog": [("AgentTasksStuckPending", {"agent": "invoice", "reason": "approval"})],
    "failing-agent": [
        ("AgentCompletionRateLow", {"agent": "daily-report"}),
        ("AgentCompletionErrorBudgetBurn", {"agent": "daily-report"}),
    ],
    "failing-trigger": [("AgentTriggerCompletionRateLow", {"agent": "support-email", "trigger": "webhook"})],
    # against its own past: needs healthy history first (test_cost_spike_fires_against_the_agents_own_baseline)
    "cost-spike": [("AgentCostSpike", {"agent": "support-email"})],
}
# The healthy parts of the same run, which must stay quiet: alert -> labels it must not fire with.
CONTROLS: list[tuple[str, dict[str, str]]] = [
    ("AgentToolErrorRateHigh", {"agent": "support-email"}),
    ("AgentToolErrorRateHigh", {"agent": "daily-report"}),
    ("AgentToolErrorRateHigh", {"agent": "invoice", "tool": "custom_gpt"}),
    ("AgentRuntimeHigh", {"agent": "support-email"}),
    ("AgentRuntimeHigh", {"agent": "daily-report"}),
    ("AgentEvaluationScoreLow", {"agent": "invoice"}),
    ("AgentEvaluationScoreLow", {"agent": "daily-report"}),
    ("AgentTasksStuckPending", {"agent": "support-email"}),
    ("AgentTasksStuckPending", {"agent": "daily-report"}),
]


def _firing(prom: PrometheusServer) -> list[dict[str, str]]:
    return [a["labels"] for a in prom.alerts() if a["state"] == "firing"]


def _matches(labels: dict[str, str], alert: str, want: dict[str, str]) -> bool:
    return labels.get("alertname") == alert and all(labels.get(k) == v for k, v in want.items())


def test_every_scenario_has_an_intended_alert() -> None:
    """Each scenario switch names an alert of the contract, and this test checks it."""
    assert set(INTENDED) == set(SCENARIOS)
    for name, (_, alert, agent) in SCENARIOS.items():
        assert alert in semconv.ALERTS
        assert (alert, agent) in {(a, w["agent"]) for a, w in INTENDED[name]}


def test_each_scenario_makes_its_alert_fire(
    demo: Callable[..., Demo], prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    """All scenarios at once (each hits its own agent) against the shipped rules with short windows
    (but the ones that compare with the agent's own past: tested on their own, below)."""
    rules = short_rules(tmp_path)
    now = ",".join(name for name in SCENARIOS if name not in BASELINED)
    d = demo("--scenario", now, "--rate", "30", "--speed", "100", "--duration", "90", "--progress-interval", "5")
    prom = prometheus_factory(compose_prometheus_config({"demo": d.port}), rule_files=[rules])
    wanted = [(s, a, w) for s, pairs in INTENDED.items() if s not in BASELINED for a, w in pairs]
    t0 = time.monotonic()
    seen: dict[str, float] = {}

    def all_fired() -> bool:
        firing = _firing(prom)
        for scenario, alert, want in wanted:
            if any(_matches(f, alert, want) for f in firing):
                seen.setdefault(f"{scenario}:{alert}", round(time.monotonic() - t0, 1))
        return len(seen) == len(wanted)

    def report() -> str:
        groups = prom.rules()
        errors = [r.get("lastError") for g in groups for r in g["rules"] if r.get("lastError")]
        return f"fired: {seen}\nfiring: {_firing(prom)}\nrule errors: {errors}\n{d.output()[-1500:]}"

    wait_until(all_fired, 75, interval=0.5, describe=report)
    firing = _firing(prom)
    for alert, unwanted in CONTROLS:
        assert not [f for f in firing if _matches(f, alert, unwanted)], f"{alert} {unwanted} fired: {firing}"
    print(f"alerts fired after (s): {seen}")
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 10


COST_WINDOW = "15s"
# Seconds of healthy traffic: the baseline (the same 15 s one period earlier) must cover a whole
# window of scrapes, not the first seconds when Prometheus' increase() sees only part of one.
SPIKE_AFTER = 46


def test_cost_spike_fires_against_the_agents_own_baseline(
    demo: Callable[..., Demo], prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    """cost-spike after 46 s of healthy traffic: AgentCostSpike (the shipped rule, rendered with 15 s
    windows and the baseline one 15 s period back, the default 3x factor and $5 floor) is quiet while
    every agent spends as it did a period earlier, then fires for support-email; invoice and
    daily-report stay quiet."""
    from alert_rules.render import Params, render_rules

    rules = tmp_path / "agent-rules.yml"
    params = Params.short(window=COST_WINDOW, baseline_period=COST_WINDOW, baseline_periods=1,
                          stall_window=COST_WINDOW, interval="1s")  # fmt: skip
    assert (params.cost_spike_factor, params.cost_spike_min_usd) == (3.0, 5.0)
    rules.write_text(render_rules(params))
    d = demo("--scenario", "cost-spike", "--scenario-delay", str(SPIKE_AFTER), "--rate", "30", "--speed", "100",
             "--duration", "90", "--progress-interval", "5")  # fmt: skip
    t0 = time.monotonic()
    prom = prometheus_factory(compose_prometheus_config({"demo": d.port}), rule_files=[rules])
    spend = f"agent:agent_cost_usd_total:increase{COST_WINDOW}"

    def values(expr: str) -> dict[str, float]:
        return {s["metric"]["agent"]: float(s["value"][1]) for s in prom.query(expr)}

    agents = {"invoice", "support-email", "daily-report"}
    wait_until(lambda: prom.query("agent_cost_usd_total"), 20, interval=0.2, describe=d.output)
    first_scrape = time.monotonic() - t0
    wait_until(lambda: set(values(spend + "_baseline")) == agents, SPIKE_AFTER, interval=0.5,
               describe=lambda: f"baselines: {values(spend + '_baseline')}\n{d.output()[-1500:]}")  # fmt: skip
    # A baseline of a whole window: 15 s of scrapes (increase() over the first seconds sees only
    # part of one), one period (15 s) before now.
    mature = first_scrape + 2 * 15 + 2
    assert mature < SPIKE_AFTER - 1, f"Prometheus scraped first {first_scrape:.1f} s in: too late to see a baseline"
    time.sleep(max(0.0, mature - (time.monotonic() - t0)))
    healthy, usual = values(spend), values(spend + "_baseline")
    assert time.monotonic() - t0 < SPIKE_AFTER, "the spike began before the healthy check"
    assert not [f for f in _firing(prom) if f["alertname"] == "AgentCostSpike"], healthy
    assert all(healthy[a] < 1.5 * usual[a] for a in agents), (healthy, usual)  # the ratio holds, not only the floor

    def fired() -> bool:
        return any(_matches(f, "AgentCostSpike", {"agent": "support-email"}) for f in _firing(prom))

    wait_until(fired, 40, interval=0.5, describe=lambda: f"spend: {values(spend)}, baseline: "
               f"{values(spend + '_baseline')}, firing: {_firing(prom)}\n{d.output()[-1500:]}")  # fmt: skip
    after = round(time.monotonic() - t0 - SPIKE_AFTER, 1)
    spiked, baseline = values(spend), values(spend + "_baseline")
    assert spiked["support-email"] > 3 * baseline["support-email"] and spiked["support-email"] >= 5
    assert {f["agent"] for f in _firing(prom) if f["alertname"] == "AgentCostSpike"} == {"support-email"}
    print(f"first scrape {first_scrape:.1f} s; AgentCostSpike fired {after} s into the spike; "
          f"healthy 15 s spend {healthy} (baseline {usual}); "
          f"then {spiked} against baselines {baseline}")
    assert d.stop() == 0


# --------------------------------------------------------------------------- acceptance 4


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_readme_main_command_serves_metrics_on_a_fresh_clone(tmp_path: Path) -> None:
    """On a fresh clone, the README's main command, run as written, installs the demo and /metrics answers."""
    main = readme_main_command()
    assert main == "pip install . && agent-exporter demo"
    url = "http://127.0.0.1:9464/metrics"
    assert url in (ROOT / "README.md").read_text()
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists() or not _port_free(9464):
        missing("needs git, a git checkout and port 9464 (the README's default) free")
    clone = tmp_path / "clone"
    subprocess.run([git, "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    # A fresh virtualenv; the system's packages satisfy the dependencies without downloading them.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=60)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv))
    env.pop("PYTHONPATH", None)
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", "-c", main], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # Our demo says where it serves once it does (the README's port is shared with anything else
        # on the machine: only then is the answer at that port known to be ours).
        wait_until(
            lambda: proc.poll() is None and url in log.read_text(errors="replace"), 90,
            describe=lambda: log.read_text(errors="replace")[-3000:],
        )  # fmt: skip
        assert (venv / "bin" / "agent-exporter").exists()  # installed by the README's command
        text = wait_until(lambda: urllib.request.urlopen(url, timeout=2).read().decode(), 10)
        assert "agent_executions_started_total" in text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C goes to the whole foreground group, `sh` included
        code = proc.wait(timeout=15)
    out = log.read_text(errors="replace")
    assert code in (0, -signal.SIGINT), out[-3000:]  # `sh` itself may die of the SIGINT
    assert "stopped" in out and "Traceback" not in out, out[-3000:]  # the demo stopped cleanly


# --------------------------------------------------------------------------- traces


def test_demo_exports_traces_with_approvals_resumed_in_the_same_trace(
    demo: Callable[..., Demo], otlp_receiver: Any
) -> None:
    """Over OTLP: every agent's executions, steps and tool calls; a suspended invoice resumes in its trace."""
    d = demo("--otlp-endpoint", otlp_receiver.url, "--rate", "30", "--speed", "100", "--duration", "20")

    def resumed_trace() -> bool:
        spans = otlp_receiver.spans()
        by_trace: dict[str, list[Any]] = {}
        for s in spans:
            if s.name == "invoke_workflow invoice":
                by_trace.setdefault(s.trace_id, []).append(s)
        return any(
            len(parts) == 2 and any(e.name == "resumed" for p in parts for e in p.events) for parts in by_trace.values()
        )

    otlp_receiver.wait_for_spans(lambda _: resumed_trace(), timeout=15)
    spans = otlp_receiver.spans()
    names = {s.name for s in spans}
    assert {f"invoke_workflow {a}" for a in ("invoice", "support-email", "daily-report")} <= names
    assert {"Extract the Required Information from the Invoice", "Update the CRM", "Draft the Reply"} <= names
    by_id = {s.span_id: s for s in spans}
    crm_calls = [s for s in spans if s.name == "execute_tool salesforce"]
    parents = {by_id[c.parent_span_id].name for c in crm_calls if c.parent_span_id in by_id}
    assert crm_calls and parents == {"Update the CRM"}
    crm_inputs = [s.attributes.get("task.step.input", "") for s in spans if s.name == "Update the CRM"]
    assert crm_inputs and not any("sk-demo" in str(i) for i in crm_inputs)  # the library masks secrets
    assert any(e.name == "task.branch.decision" for s in spans for e in s.events)
    assert any(e.name == "gen_ai.evaluation.result" for s in spans for e in s.events)
    assert d.stop() == 0
    assert otlp_receiver.bad_requests == []


def test_demo_exports_traces_to_the_endpoint_in_the_environment(demo: Callable[..., Demo], otlp_receiver: Any) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT alone (as in the compose stack) sends the traces there."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url}
    d = demo("--rate", "20", "--speed", "100", "--duration", "20", env=env)
    spans = otlp_receiver.wait_for_spans(lambda ss: any(s.name.startswith("invoke_workflow") for s in ss), timeout=10)
    assert {s.resource_attributes.get("service.name") for s in spans} == {"agent-exporter-demo"}
    assert otlp_receiver.url in d.output()  # the start line says where traces go
    assert d.stop() == 0
