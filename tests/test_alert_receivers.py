"""The Alertmanager side of the alerts: templates, receivers, routes and inhibitions (issue 13).

Each test runs a real amtool or Alertmanager on the configuration `alert_rules/render.py` renders;
the full path from the library through Prometheus is in tests/test_alerts_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from alert_rules import render
from tests.servers import AlertmanagerServer, HttpReceiver, require_binary, wait_until

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = str(ROOT / "alert_rules" / "alertmanager" / "templates" / "*.tmpl")
EMAIL = render.EmailParams(to="oncall@example.org", critical_to="pager@example.org", from_="alerts@example.org",
                           smarthost="smtp.example.org:587", auth_username="alerts",
                           auth_password_file="/run/secrets/alertmanager/smtp_password")  # fmt: skip
WEBHOOK = render.WebhookParams(url="https://tickets.example.org/alertmanager",
                               bearer_token_file="/run/secrets/alertmanager/webhook_token")  # fmt: skip


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _burn(long: str, short: str, jaeger: bool) -> dict[str, Any]:
    annotations = {"summary": "An agent is burning its completion error budget too fast.",
                   "description": f"Agent invoice is failing fast over {long} and {short}.",
                   "dashboard_url": "http://grafana.test/d/x?var-agent=invoice", "runbook_url": "http://runbook.test#x"}
    if jaeger:
        annotations["jaeger_url"] = "http://jaeger.test/search?service=agent&tags=%7B%7D"
    return {"status": "firing", "generatorURL": "http://prometheus.test/graph", "annotations": annotations,
            "labels": {"alertname": "AgentCompletionErrorBudgetBurn", "agent": "invoice", "severity": "critical",
                       "long_window": long, "short_window": short}}  # fmt: skip


def _mixed_group(tmp_path: Path) -> Path:
    """Template data: the two critical burn-rate tiers of one agent in one notification."""
    alerts = [_burn("1h", "5m", jaeger=True), _burn("6h", "30m", jaeger=False)]
    common = {"alertname": "AgentCompletionErrorBudgetBurn", "agent": "invoice", "severity": "critical"}
    data = {"receiver": "critical", "status": "firing", "alerts": alerts, "groupLabels": common,
            "commonLabels": common, "commonAnnotations": {}, "externalURL": "http://alertmanager.test"}  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    return path


def _render_template(data: Path, text: str, kind: str = "text") -> str:
    result = _run(require_binary("amtool"), "template", "render", f"--template.glob={TEMPLATES}",
                  f"--template.data={data}", f"--template.type={kind}", f"--template.text={text}")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_slack_text_names_each_alerts_windows_in_a_mixed_group(tmp_path: Path) -> None:
    """Two burn-rate tiers in one Slack message each print their own long/short windows."""
    text = _render_template(_mixed_group(tmp_path), '{{ template "agent.slack.text" . }}')
    assert "windows: 1h/5m" in text and "windows: 6h/30m" in text, text
    assert "windows: 1h/\n" not in text and "windows: 6h/\n" not in text
    # The Jaeger link shows where the alert has one, and only there.
    assert text.count("|Failed traces>") == 1 and "<http://jaeger.test/search?service=agent&tags=%7B%7D|Failed" in text


def test_email_templates_carry_every_link(tmp_path: Path) -> None:
    """The mail's subject, text and HTML carry the title, both descriptions and every link."""
    data = _mixed_group(tmp_path)
    subject = _render_template(data, '{{ template "agent.email.subject" . }}')
    assert subject.strip() == "[FIRING:2] AgentCompletionErrorBudgetBurn · agent invoice (critical)"
    for kind, name in (("text", "agent.email.text"), ("html", "agent.email.html")):
        body = _render_template(data, f'{{{{ template "{name}" . }}}}', kind)
        for needle in ("over 1h and 5m", "over 6h and 30m", "http://grafana.test/d/x?var-agent=invoice",
                       "http://runbook.test#x", "http://jaeger.test/search?service=agent", "http://prometheus.test/graph",
                       "http://alertmanager.test"):  # fmt: skip
            assert needle in body.replace("&amp;", "&"), (kind, needle, body)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=AgentCompletionRateLow", "severity=critical", "agent=invoice"], "critical"),
        (["alertname=AgentExporterDown", "severity=critical", "instance=w1:9464", "agent=invoice"], "critical"),
        (["alertname=AgentRuntimeHigh", "severity=warning", "agent=invoice"], "warning"),
    ],
)
def test_every_receiver_kind_is_routed_by_severity(tmp_path: Path, labels: list[str], receiver: str) -> None:
    """With Slack, email and webhook on, one receiver per severity holds all three; amtool agrees."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(render.render_alertmanager(render.AlertmanagerParams(email=EMAIL, webhook=WEBHOOK,
                                                                         templates=TEMPLATES)))  # fmt: skip
    amtool = require_binary("amtool")
    check = _run(amtool, "check-config", path)
    assert check.returncode == 0, check.stdout + check.stderr
    result = _run(amtool, "config", "routes", "test", f"--config.file={path}", f"--verify.receivers={receiver}",
                  *labels)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == receiver, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    by_name = {r["name"]: r for r in config["receivers"]}
    for name in ("critical", "warning"):
        assert set(by_name[name]) == {"name", "slack_configs", "email_configs", "webhook_configs"}
    assert by_name["critical"]["email_configs"][0]["to"] == "pager@example.org"
    assert by_name["warning"]["email_configs"][0]["to"] == "oncall@example.org"


def test_render_out_writes_a_deployment_copy_that_passes_promtool_and_amtool(tmp_path: Path) -> None:
    """`render.py --out DIR` with links, email and webhook settings writes valid rules and config."""
    out = tmp_path / "deploy"
    done = subprocess.run(
        [sys.executable, str(ROOT / "alert_rules" / "render.py"), "--out", str(out),
         "--grafana-url", "https://grafana.example.org", "--runbook-url", "https://wiki.example.org/runbook",
         "--jaeger-url", "https://jaeger.example.org", "--email-to", "oncall@example.org",
         "--email-from", "alerts@example.org", "--smarthost", "smtp.example.org:587", "--smtp-username", "alerts",
         "--smtp-password-file", "/run/secrets/alertmanager/smtp_password",
         "--webhook-url", "https://tickets.example.org/hook"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rules, config = out / "agent-rules.yml", out / "alertmanager" / "alertmanager.yml"
    check = _run(require_binary("promtool"), "check", "rules", rules)
    assert check.returncode == 0, check.stdout + check.stderr
    check = _run(require_binary("amtool"), "check-config", config)  # templates/*.tmpl next to it
    assert check.returncode == 0 and "1 templates" in check.stdout, check.stdout + check.stderr
    text = rules.read_text()
    assert "https://grafana.example.org/d/" in text and "https://wiki.example.org/runbook#agentexporterdown" in text
    assert "https://jaeger.example.org/search?" in text and "localhost" not in text
    assert (out / "runbook" / "runbook.html").is_file()
    receivers = yaml.safe_load(config.read_text())["receivers"]
    assert all({"slack_configs", "email_configs", "webhook_configs"} <= set(r) for r in receivers)


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": "s", "description": f"{name} {labels}", "dashboard_url": "http://g/d",
                        "runbook_url": "http://r#x"},  # fmt: skip
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def test_exporter_down_inhibits_only_the_stall_of_the_agents_it_exported(
    tmp_path: Path, alertmanager_factory: Callable[..., AlertmanagerServer], slack_receiver: HttpReceiver
) -> None:
    """A down target silences its own agent's stall; the stall of an agent on a healthy target still arrives."""
    url_file = tmp_path / "slack_url"
    url_file.write_text(f"{slack_receiver.url}/slack\n")
    am = alertmanager_factory(render.render_alertmanager(render.AlertmanagerParams.short(str(url_file))))
    am.post_alerts([
        _alert("AgentExporterDown", "critical", job="agent-exporter", instance="w1:9464", agent="invoice"),
        _alert("AgentExporterDown", "critical", job="agent-exporter", instance="w1:9464", agent="billing"),
        _alert("AgentExecutionsStalled", "warning", agent="invoice"),
        _alert("AgentExecutionsStalled", "warning", agent="support"),
    ])  # fmt: skip

    def titles() -> list[str]:
        return [a["title"] for r in slack_receiver.requests() if isinstance(r.json, dict)
                for a in r.json.get("attachments", [])]  # fmt: skip

    arrived = wait_until(lambda: len(titles()) >= 2 and titles(), 30, describe=lambda: am.log_tail(20))
    states = wait_until(
        lambda: {(a["labels"]["alertname"], a["labels"].get("agent")): a["status"]["state"] for a in am.alerts()}, 10
    )
    time.sleep(3)  # group_interval is 1s: a wrongly delivered stall would have arrived by now
    assert states[("AgentExecutionsStalled", "support")] == "active", states
    assert states[("AgentExecutionsStalled", "invoice")] == "suppressed", states
    delivered = titles()
    assert any(t.startswith("[FIRING:1] AgentExecutionsStalled · agent support (warning)") for t in delivered), arrived
    # One message for the down target (grouped by instance), and nothing names the explained stall.
    down = [t for t in delivered if "AgentExporterDown" in t]
    assert down == ["[FIRING:2] AgentExporterDown · instance w1:9464 (critical)"], delivered
    assert not [t for t in delivered if "AgentExecutionsStalled · agent invoice" in t], delivered
