"""The alert rules and the Alertmanager configuration, checked with promtool and amtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alert_rules import render

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "alert_rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
SUITES = sorted((RULES_DIR / "tests").glob("*.yml"))
AM_CONFIG = RULES_DIR / "alertmanager" / "alertmanager.yml"


def _tool(name: str) -> str:
    """Path of a Prometheus tool; skip without it, but fail in CI."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _rules(text: str) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_committed_files_are_current() -> None:
    """The committed rules and Alertmanager config are what render.py produces now."""
    for path, text in render.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python3 alert_rules/render.py"


def test_rule_files_exist_outside_alertmanager_config() -> None:
    """Only rule files match alert_rules/*.yml, so Prometheus can load that glob."""
    assert [p.name for p in RULE_FILES] == ["agent-rules.yml"]


@pytest.mark.servers
@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rule_file: Path) -> None:
    """promtool check rules passes on every rule file."""
    result = _run(_tool("promtool"), "check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.servers
def test_promtool_check_rules_short_params(tmp_path: Path) -> None:
    """The rules rendered with an end-to-end test's short windows are valid too."""
    path = tmp_path / "short.yml"
    path.write_text(render.render_rules(render.Params.short(interval="1s")))
    result = _run(_tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.servers
@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.name)
def test_promtool_test_rules(suite: Path) -> None:
    """The promtool unit-test suite passes."""
    result = _run(_tool("promtool"), "test", "rules", suite)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested() -> None:
    """Each alert in the contract fires in a suite and has a not-yet-firing case."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for suite in SUITES:
        for group in yaml.safe_load(suite.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == set(render.ALERTS)
    assert quiet == set(render.ALERTS)


def test_alerts_match_contract() -> None:
    """Exactly the contract's alerts, each with severity, for, the four annotations (and Jaeger on completion)."""
    alerts = [r for r in _rules(render.render_rules()) if "alert" in r]
    assert {r["alert"] for r in alerts} == set(render.ALERTS)
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning")  # type: ignore[index]
        assert "for" in rule
        annotations = rule["annotations"]
        expected = {"summary", "description", "dashboard_url", "runbook_url"}
        if rule["alert"] in render.JAEGER_ALERTS:
            expected.add("jaeger_url")
        assert set(annotations) == expected, rule["alert"]  # type: ignore[arg-type]
        assert "{{" not in annotations["summary"]  # type: ignore[index]


def test_recording_rule_names_follow_convention() -> None:
    """Recording rules are named level:metric:operations."""
    for rule in _rules(render.render_rules()):
        if "record" in rule:
            assert str(rule["record"]).count(":") == 2, rule["record"]


def test_render_with_parameters() -> None:
    """Windows, for durations, volume and URLs come from Params."""
    text = render.render_rules(
        render.Params.short(window="30s", for_="2s", min_executions=3,
                            grafana_url="http://grafana:3000", runbook_base="http://docs/runbook.md")
    )  # fmt: skip
    alerts = {r["alert"]: r for r in _rules(text) if "alert" in r}
    low = alerts["AgentCompletionRateLow"]
    assert low["for"] == "2s"
    assert "agent:agent_execution_completion:ratio_rate30s" in str(low["expr"])
    assert ">= 3" in str(low["expr"])
    assert low["annotations"]["dashboard_url"].startswith("http://grafana:3000/d/")  # type: ignore[index]
    assert low["annotations"]["runbook_url"] == "http://docs/runbook.md#agentcompletionratelow"  # type: ignore[index]


def test_bad_params_raise() -> None:
    """A malformed duration, an unknown alert, a baseline period shorter than the window or a bad URL: ValueError."""
    with pytest.raises(ValueError):
        render.Params(window="1 hour")
    with pytest.raises(ValueError):
        render.Params(for_durations={"NoSuchAlert": "1m"})
    with pytest.raises(ValueError, match="baseline_period"):
        render.Params(baseline_period="30m")
    with pytest.raises(ValueError, match="grafana_url"):
        render.Params(grafana_url="grafana.example.org")


@pytest.mark.servers
def test_amtool_check_config() -> None:
    """amtool check-config passes on the Alertmanager configuration and its templates."""
    result = _run(_tool("amtool"), "check-config", AM_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


@pytest.mark.servers
def test_amtool_check_short_config(tmp_path: Path) -> None:
    """The configuration rendered for an end-to-end test is valid too."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(render.render_alertmanager(render.AlertmanagerParams.short(str(tmp_path / "url"))))
    result = _run(_tool("amtool"), "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.servers
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=AgentCompletionRateLow", "severity=critical", "agent=invoice"], "critical"),
        (["alertname=AgentExporterDown", "severity=critical", "instance=w1:9464"], "critical"),
        (["alertname=AgentRuntimeHigh", "severity=warning", "agent=invoice"], "warning"),
        (["alertname=SomethingElse"], "warning"),
    ],
)
def test_amtool_routes(labels: list[str], receiver: str) -> None:
    """Critical and warning alerts reach their receivers (Slack by default)."""
    result = _run(_tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  f"--verify.receivers={receiver}", *labels)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


@pytest.mark.servers
def test_amtool_routes_reject_wrong_receiver() -> None:
    """A warning does not go to the critical receiver (the route test can fail)."""
    result = _run(_tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  "--verify.receivers=critical", "severity=warning", "agent=invoice")  # fmt: skip
    assert result.returncode != 0


@pytest.mark.servers
def test_slack_template_renders() -> None:
    """The Slack templates parse and render with amtool's example data."""
    glob = str(RULES_DIR / "alertmanager" / "templates" / "*.tmpl")
    text = '{{ template "agent.slack.title" . }}|{{ template "agent.slack.text" . }}'
    result = _run(_tool("amtool"), "template", "render", f"--template.glob={glob}", f"--template.text={text}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Dashboard" in result.stdout and "Runbook" in result.stdout


def test_alertmanager_config_shape() -> None:
    """send_resolved, grouping by alertname and agent, critical inhibits warning, no secret."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", "agent"]
    assert config["global"]["slack_api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert "hooks.slack.com" not in AM_CONFIG.read_text()
    for receiver in config["receivers"]:
        for slack in receiver["slack_configs"]:
            assert slack["send_resolved"] is True
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['severity="critical"']
    assert inhibit["target_matchers"] == ['severity="warning"']
    assert inhibit["equal"] == ["alertname", "agent"]


def test_exporter_down_inhibits_the_stall_of_its_own_agents_only() -> None:
    """The AgentExporterDown inhibition needs the same agent, so one dead target cannot mute other agents."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    (rule,) = [r for r in config["inhibit_rules"] if 'alertname="AgentExporterDown"' in r["source_matchers"]]
    assert rule["target_matchers"] == ['alertname="AgentExecutionsStalled"']
    assert rule["equal"] == ["agent"] and 'agent!=""' in rule["source_matchers"]
    down = next(r for r in _rules(render.render_rules()) if r.get("alert") == "AgentExporterDown")
    assert "group by (job, instance, agent)" in str(down["expr"])  # one alert per agent the target exported


def test_only_the_default_receiver_kind_is_on() -> None:
    """Slack is on by default; email and webhook are opt-in, and off in the committed file."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    assert [r["name"] for r in config["receivers"]] == ["critical", "warning"]
    assert all(set(r) == {"name", "slack_configs"} for r in config["receivers"])
    off = yaml.safe_load(render.render_alertmanager(render.AlertmanagerParams(slack=False)))
    assert all(set(r) == {"name"} for r in off["receivers"]) and "slack_api_url_file" not in off["global"]


def test_email_and_webhook_settings_are_checked() -> None:
    """A smarthost without a port, a password without a user, or two webhook URLs is a ValueError."""
    with pytest.raises(ValueError, match="host:port"):
        render.EmailParams(to="a@example.org", from_="b@example.org", smarthost="smtp.example.org")
    with pytest.raises(ValueError, match="auth_username"):
        render.EmailParams(to="a@example.org", from_="b@example.org", smarthost="smtp.example.org:587",
                           auth_password_file="/run/secrets/pw")  # fmt: skip
    with pytest.raises(ValueError, match="exactly one"):
        render.WebhookParams(url="https://t.example.org", url_file="/run/secrets/url")
    with pytest.raises(ValueError, match="exactly one"):
        render.WebhookParams()


def test_render_refuses_settings_without_out(capsys: pytest.CaptureFixture[str]) -> None:
    """Settings apply to a deployment's copy (`--out`), never silently to the committed files."""
    assert render.main(["--grafana-url", "https://grafana.example.org"]) == 2
    assert "--out" in capsys.readouterr().err


def test_runbook_has_a_section_per_alert() -> None:
    """docs/runbook.md has a heading for every alert, matching the runbook_url anchors."""
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = {line[3:].strip() for line in runbook.splitlines() if line.startswith("## ")}
    assert set(render.ALERTS) <= headings
