"""Render the Prometheus rules and the Alertmanager configuration from one set of parameters.

The committed files (`alert_rules/agent-rules.yml`, `alert_rules/alertmanager/alertmanager.yml`,
`alert_rules/runbook/runbook.html`) are this module's output with the default `Params()` /
`AlertmanagerParams()`; a test checks that they are current. An end-to-end test renders the same
rules with short windows instead::

    from alert_rules.render import Params, render_rules
    rules_yaml = render_rules(Params.short(window="1m", for_="0s", min_executions=5))

Run `python3 alert_rules/render.py` to rewrite the committed files, `--check` to only compare,
`--out DIR` with settings (links, email, webhook) to render a deployment's own copy.
Metric names, objective names and defaults, alert names and the scrape job come from
`exporter/semconv.py` (loaded by path, so rendering needs none of the library's dependencies).
Rules: `alert_rules/rules.py` (parameters, recording rules) and `alert_rules/alerts.py`;
Alertmanager: `alert_rules/alertmanager_config.py`; runbook page: `alert_rules/runbook_page.py`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if __package__ in (None, ""):  # run as `python3 alert_rules/render.py`
    sys.path.insert(0, str(ROOT))

from alert_rules.alertmanager_config import (  # noqa: E402
    TEMPLATES_DIR,
    AlertmanagerParams,
    EmailParams,
    WebhookParams,
    render_alertmanager,
)
from alert_rules.alerts import JAEGER_ALERTS, alerting_rules, render_rules  # noqa: E402
from alert_rules.rules import ALERTS, BurnWindow, Params, recording_rules, seconds, semconv  # noqa: E402
from alert_rules.runbook_page import render_runbook_page  # noqa: E402

RULES_FILE = HERE / "agent-rules.yml"
ALERTMANAGER_FILE = HERE / "alertmanager" / "alertmanager.yml"
RUNBOOK_PAGE = HERE / "runbook" / "runbook.html"


def outputs() -> dict[Path, str]:
    """The committed files and what they should contain."""
    return {RULES_FILE: render_rules(Params()), ALERTMANAGER_FILE: render_alertmanager(),
            RUNBOOK_PAGE: render_runbook_page()}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    doc = __doc__ or "Render the alert rules."
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    parser.add_argument("--out", type=Path, help="render into this folder (rules, alertmanager/, runbook/) "
                        "with the settings below, instead of the committed files")  # fmt: skip
    links = parser.add_argument_group("links in every alert")
    links.add_argument("--grafana-url", default=Params.grafana_url, help="Grafana's external URL")
    links.add_argument("--runbook-url", default=Params.runbook_base, help="the runbook page; #<alert> is appended")
    links.add_argument("--jaeger-url", default=Params.jaeger_url, help="Jaeger UI's external URL")
    links.add_argument("--jaeger-service", default=Params.jaeger_service,
                       help="Jaeger service searched when the agent's series have no `service` label")  # fmt: skip
    slack = parser.add_argument_group("Slack (on by default)")
    slack.add_argument("--no-slack", action="store_true", help="no Slack receiver")
    slack.add_argument("--slack-url-file", default=AlertmanagerParams.slack_api_url_file)
    slack.add_argument("--critical-slack-url-file", help="another webhook (channel) for critical alerts")
    email = parser.add_argument_group("email (on with --email-to)")
    email.add_argument("--email-to", help="addresses, comma-separated")
    email.add_argument("--email-critical-to", help="other addresses for critical alerts")
    email.add_argument("--email-from")
    email.add_argument("--smarthost", help="SMTP server host:port")
    email.add_argument("--smtp-username")
    email.add_argument("--smtp-password-file", help="file holding the SMTP password, read at send time")
    email.add_argument("--smtp-no-require-tls", action="store_true", help="allow SMTP without STARTTLS")
    email.add_argument("--smtp-ca-file", help="CA certificate of the SMTP server")
    email.add_argument("--smtp-server-name", help="name to verify the SMTP server's certificate against")
    webhook = parser.add_argument_group("webhook for a ticketing system (on with --webhook-url or --webhook-url-file)")
    webhook.add_argument("--webhook-url")
    webhook.add_argument("--webhook-url-file", help="file holding the URL (Alertmanager 0.26 or newer)")
    webhook.add_argument("--webhook-bearer-token-file", help="file holding a bearer token for the webhook")
    return parser


def params_from_args(args: argparse.Namespace) -> tuple[Params, AlertmanagerParams]:
    """The rule and Alertmanager parameters the command line asks for (ValueError if inconsistent)."""
    rules = Params(grafana_url=args.grafana_url, runbook_base=args.runbook_url, jaeger_url=args.jaeger_url,
                   jaeger_service=args.jaeger_service)  # fmt: skip
    email = None
    if args.email_to:
        if not (args.email_from and args.smarthost):
            raise ValueError("--email-to needs --email-from and --smarthost")
        email = EmailParams(
            to=args.email_to, from_=args.email_from, smarthost=args.smarthost, critical_to=args.email_critical_to,
            auth_username=args.smtp_username, auth_password_file=args.smtp_password_file,
            require_tls=not args.smtp_no_require_tls, tls_ca_file=args.smtp_ca_file,
            tls_server_name=args.smtp_server_name,
        )  # fmt: skip
    webhook = None
    if args.webhook_url or args.webhook_url_file:
        webhook = WebhookParams(url=args.webhook_url, url_file=args.webhook_url_file,
                                bearer_token_file=args.webhook_bearer_token_file)  # fmt: skip
    am = AlertmanagerParams(slack=not args.no_slack, slack_api_url_file=args.slack_url_file,
                            critical_slack_api_url_file=args.critical_slack_url_file,
                            email=email, webhook=webhook)  # fmt: skip
    return rules, am


def render_into(out: Path, rules: Params, am: AlertmanagerParams) -> list[Path]:
    """A deployment's copy: the rule file, the Alertmanager folder with its templates, the runbook page."""
    files = {out / RULES_FILE.name: render_rules(rules), out / "alertmanager" / ALERTMANAGER_FILE.name:
             render_alertmanager(am), out / "runbook" / RUNBOOK_PAGE.name: render_runbook_page()}  # fmt: skip
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    templates = out / "alertmanager" / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for tmpl in sorted(TEMPLATES_DIR.glob("*.tmpl")):
        shutil.copyfile(tmpl, templates / tmpl.name)
        files[templates / tmpl.name] = ""
    return list(files)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out is not None:
        try:
            rules, am = params_from_args(args)
        except ValueError as exc:
            print(f"render.py: {exc}", file=sys.stderr)
            return 2
        for path in render_into(args.out, rules, am):
            print(f"wrote {path}")
        return 0
    if _parser().parse_args([]) != argparse.Namespace(**{**vars(args), "check": False}):
        print("render.py: settings need --out DIR (the committed files use the defaults)", file=sys.stderr)
        return 2
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print("stale: " + ", ".join(str(s.relative_to(ROOT)) for s in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "ALERTS", "JAEGER_ALERTS", "AlertmanagerParams", "BurnWindow", "EmailParams", "Params", "WebhookParams",
    "alerting_rules", "outputs",
    "recording_rules", "render_alertmanager", "render_into", "render_rules", "seconds", "semconv",
]  # fmt: skip
