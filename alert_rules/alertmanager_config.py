"""The Alertmanager configuration: routes, inhibitions and the Slack, email and webhook receivers.

Rendered by `alert_rules/render.py` (which re-exports `AlertmanagerParams` and
`render_alertmanager`). Every receiver kind is in both receivers, `critical` and `warning`, so
routing by severity is the same whichever kinds are switched on; Slack is on by default, email
and the webhook are opt-in (`EmailParams`, `WebhookParams`). Secrets (Slack URL, SMTP password,
webhook URL or token) are read from files at send time and never rendered into the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "alertmanager" / "templates"

RECEIVERS = ("critical", "warning")


@dataclass(frozen=True)
class EmailParams:
    """An `email_configs` entry: SMTP smarthost, TLS, and the password read from a file."""

    to: str  # comma-separated addresses
    from_: str
    smarthost: str  # host:port; 587 for STARTTLS, 465 for implicit TLS
    critical_to: str | None = None  # other addresses for critical alerts; None: `to`
    auth_username: str | None = None
    auth_password_file: str | None = None  # read by Alertmanager at send time
    require_tls: bool = True  # STARTTLS required (Alertmanager's default); False only on a trusted network
    tls_ca_file: str | None = None  # CA of the smarthost's certificate, when not a public one
    tls_server_name: str | None = None  # name to verify the certificate against; None: the smarthost's host
    tls_insecure_skip_verify: bool = False
    hello: str | None = None  # the EHLO name; None: Alertmanager's default (localhost)

    def __post_init__(self) -> None:
        host, sep, port = self.smarthost.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"email smarthost must be host:port, got {self.smarthost!r}")
        for name in ("to", "from_"):
            if "@" not in getattr(self, name):
                raise ValueError(f"email {name.rstrip('_')} must be an address, got {getattr(self, name)!r}")
        if self.auth_password_file and not self.auth_username:
            raise ValueError("email auth_password_file needs auth_username")

    def config(self, to: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"to": to, "from": self.from_, "smarthost": self.smarthost}
        if self.hello:
            cfg["hello"] = self.hello
        if self.auth_username:
            cfg["auth_username"] = self.auth_username
        if self.auth_password_file:
            cfg["auth_password_file"] = self.auth_password_file
        cfg["require_tls"] = self.require_tls
        tls: dict[str, Any] = {}
        if self.tls_ca_file:
            tls["ca_file"] = self.tls_ca_file
        if self.tls_server_name:
            tls["server_name"] = self.tls_server_name
        if self.tls_insecure_skip_verify:
            tls["insecure_skip_verify"] = True
        if tls:
            cfg["tls_config"] = tls
        cfg.update({
            "send_resolved": True,
            "headers": {"Subject": '{{ template "agent.email.subject" . }}'},
            "html": '{{ template "agent.email.html" . }}',
            "text": '{{ template "agent.email.text" . }}',
        })  # fmt: skip
        return cfg


@dataclass(frozen=True)
class WebhookParams:
    """A `webhook_configs` entry: Alertmanager's webhook JSON (version 4) POSTed to a ticketing system.

    Give `url`, or `url_file` (read at send time; Alertmanager 0.26 or newer, 0.25 rejects it).
    """

    url: str | None = None
    url_file: str | None = None
    bearer_token_file: str | None = None  # sent as `Authorization: Bearer <token>`
    max_alerts: int = 0  # 0: every alert of the group in one POST

    def __post_init__(self) -> None:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("webhook needs exactly one of url and url_file")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s), got {self.url!r}")
        if self.max_alerts < 0:
            raise ValueError("webhook max_alerts must be >= 0")

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"url": self.url} if self.url is not None else {"url_file": self.url_file}
        cfg.update({"send_resolved": True, "max_alerts": self.max_alerts})
        if self.bearer_token_file:
            cfg["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": self.bearer_token_file}}
        return cfg


@dataclass(frozen=True)
class AlertmanagerParams:
    """The Alertmanager configuration's knobs; the defaults are the committed file (Slack only)."""

    slack: bool = True
    slack_api_url_file: str = "/etc/alertmanager/secrets/slack_webhook_url"
    # A second webhook (another channel) for the critical receiver; None: both use the global one.
    critical_slack_api_url_file: str | None = None
    email: EmailParams | None = None
    webhook: WebhookParams | None = None
    templates: str = "templates/*.tmpl"  # relative paths resolve against the config file's folder
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    critical_repeat_interval: str = "1h"
    resolve_timeout: str = "5m"

    @classmethod
    def short(cls, slack_api_url_file: str, **overrides: Any) -> AlertmanagerParams:
        """Seconds instead of minutes, templates by absolute path: for an end-to-end test."""
        values: dict[str, Any] = dict(
            slack_api_url_file=slack_api_url_file,
            templates=str(TEMPLATES_DIR / "*.tmpl"),
            group_wait="1s", group_interval="1s", repeat_interval="1h", critical_repeat_interval="1h",
        )  # fmt: skip
        values.update(overrides)
        return cls(**values)


def _slack(api_url_file: str | None = None) -> dict[str, Any]:
    return {
        **({"api_url_file": api_url_file} if api_url_file else {}),
        "send_resolved": True,
        "color": '{{ template "agent.slack.color" . }}',
        "title": '{{ template "agent.slack.title" . }}',
        "title_link": '{{ template "agent.slack.title_link" . }}',
        "text": '{{ template "agent.slack.text" . }}',
        "fallback": '{{ template "agent.slack.title" . }}',
        "actions": [
            {"type": "button", "text": "Dashboard", "url": "{{ (index .Alerts 0).Annotations.dashboard_url }}"},
            {"type": "button", "text": "Runbook", "url": "{{ (index .Alerts 0).Annotations.runbook_url }}"},
        ],
    }


def _receiver(a: AlertmanagerParams, severity: str) -> dict[str, Any]:
    """One receiver with every kind that is switched on (new dicts each call: no YAML aliases)."""
    receiver: dict[str, Any] = {"name": severity}
    if a.slack:
        receiver["slack_configs"] = [_slack(a.critical_slack_api_url_file if severity == "critical" else None)]
    if a.email:
        to = a.email.critical_to if severity == "critical" and a.email.critical_to else a.email.to
        receiver["email_configs"] = [a.email.config(to)]
    if a.webhook:
        receiver["webhook_configs"] = [a.webhook.config()]
    return receiver


def alertmanager_doc(a: AlertmanagerParams) -> dict[str, Any]:
    """The configuration as a dict."""
    global_: dict[str, Any] = {"resolve_timeout": a.resolve_timeout}
    if a.slack:
        global_["slack_api_url_file"] = a.slack_api_url_file
    return {
        "global": global_,
        "templates": [a.templates],
        "route": {
            "receiver": "warning",
            "group_by": ["alertname", "agent"],
            "group_wait": a.group_wait,
            "group_interval": a.group_interval,
            "repeat_interval": a.repeat_interval,
            "routes": [
                {
                    "matchers": ['severity="critical"'],
                    "receiver": "critical",
                    "repeat_interval": a.critical_repeat_interval,
                    "routes": [
                        {  # one message per down target, listing the agents it exported
                            "matchers": ['alertname="AgentExporterDown"'],
                            "group_by": ["alertname", "job", "instance"],
                        },
                    ],
                },
                {"matchers": ['severity="warning"'], "receiver": "warning"},
            ],
        },  # fmt: skip
        "inhibit_rules": [
            {  # the fast burn (or any critical) silences the slow one of the same alert and agent
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "agent"],
            },
            {  # the whole agent failing makes the per-trigger alerts noise
                "source_matchers": ['alertname="AgentCompletionRateLow"'],
                "target_matchers": ['alertname="AgentTriggerCompletionRateLow"'],
                "equal": ["agent"],
            },
            {  # a low-volume agent failing every run: its "failures above the objective" warning is noise
                "source_matchers": ['alertname="AgentExecutionsAllFailing"'],
                "target_matchers": ['alertname="AgentLowVolumeFailures"'],
                "equal": ["agent"],
            },
            {  # a down target explains the stall of the agents it exported, and of no other agent
                "source_matchers": ['alertname="AgentExporterDown"', 'agent!=""'],
                "target_matchers": ['alertname="AgentExecutionsStalled"'],
                "equal": ["agent"],
            },
        ],
        "receivers": [_receiver(a, severity) for severity in RECEIVERS],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(doc: Any) -> str:
    """YAML as committed: keys in insertion order, multi-line strings as blocks."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100_000, allow_unicode=True)


def render_alertmanager(params: AlertmanagerParams | None = None) -> str:
    """The Alertmanager configuration as YAML text."""
    a = params or AlertmanagerParams()
    header = (
        "# GENERATED by alert_rules/render.py: do not edit by hand (see docs/alerts.md).\n"
        "# Secrets (Slack webhook URL, SMTP password, webhook URL or token) are read from files at send\n"
        "# time; never commit them.\n"
    )
    return header + dump(alertmanager_doc(a))


__all__ = ["AlertmanagerParams", "EmailParams", "WebhookParams", "alertmanager_doc", "dump", "render_alertmanager"]
