"""The alerts for agents below the ratio alerts' volume guard (issue 18): rules, links, Slack text.

Their timing in the three regimes is measured by the promtool suite alert_rules/tests/low_volume.yml
(run by tests/test_alert_rules.py::test_promtool_test_rules); docs/alerts.md states the figures.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alert_rules import render
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = str(ROOT / "alert_rules" / "alertmanager" / "templates" / "*.tmpl")
LOW_VOLUME = ("AgentExecutionsAllFailing", "AgentLowVolumeFailures")


def _alerts(params: render.Params | None = None) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(render.render_rules(params))["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_low_volume_alerts_are_rendered_with_a_regime() -> None:
    """Both alerts exist, carry severity and a `regime` label, and are in the alert list."""
    alerts = _alerts()
    assert alerts["AgentExecutionsAllFailing"]["labels"] == {"severity": "critical", "regime": "all-failing"}
    assert alerts["AgentLowVolumeFailures"]["labels"] == {"severity": "warning", "regime": "low-volume"}
    assert set(LOW_VOLUME) <= set(render.ALERTS)


def test_low_volume_alerts_link_to_the_failed_executions() -> None:
    """Each links to Jaeger's failed executions of the agent over its longest window (2d by default)."""
    alerts = _alerts()
    for name in LOW_VOLUME:
        url = alerts[name]["annotations"]["jaeger_url"]
        assert "%q,\"task.status\":\"failed\"" in url and "$labels.agent" in url, name
        assert "(time() - 172800) * 1e6" in url, name  # the window starts 2 days before the evaluation
        assert name in render.JAEGER_ALERTS


def test_all_failing_leaves_high_volume_agents_to_the_ratio_alerts() -> None:
    """AgentExecutionsAllFailing checks every window of the ladder and is off above the 1h volume guard."""
    alerts = _alerts()
    expr = alerts["AgentExecutionsAllFailing"]["expr"]
    for window in render.Params().all_failing_windows:
        failed = f'agent_status:agent_executions_finished:increase{window}{{status="failed"}}) >= 2'
        completed = f'agent_status:agent_executions_finished:increase{window}{{status="completed"}}) > 0'
        assert failed in expr and completed in expr, window
    assert expr.rstrip().endswith("unless on(agent)\nagent:agent_executions_finished:increase1h >= 10")
    assert "agent_status:agent_executions_finished:increase2d) < 10" in alerts["AgentLowVolumeFailures"]["expr"]


def test_status_counts_start_a_new_series_from_zero() -> None:
    """The low-volume counts add a series born in the window (the library creates it at 1), which increase() misses."""
    groups = yaml.safe_load(render.render_rules())["groups"]
    records = {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}
    for window in ("1h", "2h", "6h", "1d", "2d"):
        expr = records[f"agent_status:agent_executions_finished:increase{window}"]
        born = f'unless\n  agent_executions_finished_total{{status=~"completed|failed"}} offset {window})'
        assert expr.count(born) == 2 and f"[{window}])" in expr, window


def test_low_volume_windows_come_from_params() -> None:
    """The ladder, the minimum and the low-volume window are rendering parameters, checked at construction."""
    alerts = _alerts(render.Params.short(all_failing_min=3))
    assert 'increase30s{status="failed"}) >= 3' in alerts["AgentExecutionsAllFailing"]["expr"]
    assert "agent_status:agent_executions_finished:increase4m" in alerts["AgentLowVolumeFailures"]["expr"]
    with pytest.raises(ValueError, match="all_failing_windows"):
        render.Params(all_failing_windows=())
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        render.Params(low_volume_window="two days")


def test_all_failing_inhibits_the_low_volume_warning_of_the_same_agent() -> None:
    """One notification per broken agent: the critical all-failing alert mutes its own agent's warning."""
    config = yaml.safe_load((ROOT / "alert_rules" / "alertmanager" / "alertmanager.yml").read_text())
    (rule,) = [r for r in config["inhibit_rules"] if r["source_matchers"] == ['alertname="AgentExecutionsAllFailing"']]
    assert rule["target_matchers"] == ['alertname="AgentLowVolumeFailures"'] and rule["equal"] == ["agent"]


@pytest.mark.servers
def test_slack_text_names_the_regime_and_links_failed_traces(tmp_path: Path) -> None:
    """The Slack message of a low-volume alert says which regime fired and links to the failed traces."""
    alert = _alerts()["AgentExecutionsAllFailing"]
    labels = {"alertname": "AgentExecutionsAllFailing", "agent": "nightly", **alert["labels"]}
    annotations = {"summary": alert["annotations"]["summary"], "description": "Agent nightly failed.",
                   "dashboard_url": "http://grafana.test/d/x", "runbook_url": "http://runbook.test#x",
                   "jaeger_url": "http://jaeger.test/search?service=agent"}  # fmt: skip
    common = {k: labels[k] for k in ("alertname", "agent", "severity")}
    data = {"receiver": "critical", "status": "firing", "groupLabels": common, "commonLabels": common,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.test",
            "alerts": [{"status": "firing", "labels": labels, "annotations": annotations,
                        "generatorURL": "http://prometheus.test/graph"}]}  # fmt: skip
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = subprocess.run(
        [require_binary("amtool"), "template", "render", f"--template.glob={TEMPLATES}", f"--template.data={path}",
         "--template.type=text", '--template.text={{ template "agent.slack.text" . }}'],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "regime: all-failing" in result.stdout, result.stdout
    assert "<http://jaeger.test/search?service=agent|Failed traces>" in result.stdout
