"""Library → real Prometheus → real Alertmanager → Slack, email and webhook stand-ins (issues 3, 13).

The library serves /metrics while a background workload runs two agents at the same volume:
`invoice` fails half its executions (objective 95 %), `support` fails none (objective 99 %).
Prometheus scrapes it every second and evaluates the rules rendered with short windows and
`for: 0s`; Alertmanager, rendered from the same code as the committed config, posts to a local
HTTP receiver (critical alerts on one webhook path, warnings on another, so the routing shows),
and, with email and the webhook on, to a local SMTP server (STARTTLS, password from a file) and
a local ticketing webhook: every copy of the alert carries the dashboard, runbook and Jaeger links.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import exporter
from alert_rules.render import (
    AlertmanagerParams,
    EmailParams,
    Params,
    WebhookParams,
    render_alertmanager,
    render_rules,
)
from exporter import semconv as sc
from tests.mail_sink import ReceivedMail, SmtpSink
from tests.servers import AlertmanagerServer, HttpReceiver, PrometheusServer, RecordedRequest, free_port

FAILING, HEALTHY = "invoice", "support"
ALERT = "AgentCompletionRateLow"
RATE = 20.0  # executions per second and agent
SETTLE = 6.0  # seconds the run goes on after the first message, for a wrong one to arrive
FIRST_MESSAGE_TIMEOUT = 45.0
WORKLOAD_LIMIT = 90.0  # the workload thread stops by itself after this, whatever happens


class Workload:
    """Both agents at RATE executions/s in a daemon thread; every other `invoice` run fails."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.counts = {FAILING: 0, HEALTHY: 0}
        self._thread = threading.Thread(target=self._run, name="alert-e2e-workload", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + WORKLOAD_LIMIT
        i = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                for agent in (FAILING, HEALTHY):
                    with exporter.execution(agent, trigger="email", task_id=f"{agent}-{i}") as run:
                        with run.step("read_email"):
                            pass
                        if agent == FAILING and i % 2:
                            run.fail("tool_error", "ledger API answered 503")
                    self.counts[agent] += 1
                i += 1
                self.stop.wait(1 / RATE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def library_port() -> Iterator[int]:
    """The library configured with per-agent objectives, serving /metrics on 127.0.0.1."""
    port = free_port()
    exporter.configure(
        metrics_port=port,
        metrics_addr="127.0.0.1",
        set_global_tracer_provider=False,
        log_level="off",
        objectives={FAILING: {"completion_ratio": 0.95}, HEALTHY: {"completion_ratio": 0.99}},
    )
    yield port
    exporter.reset()


def _slack_messages(requests: list[RecordedRequest]) -> list[tuple[str, dict[str, Any]]]:
    """(path, attachment) for every attachment of every Slack-shaped JSON body received."""
    out = []
    for r in requests:
        if isinstance(r.json, dict):
            out.extend((r.path, a) for a in r.json.get("attachments", []))
    return out


def _names(attachment: dict[str, Any], agent: str, alert: str) -> bool:
    title, text = attachment.get("title", ""), attachment.get("text", "")
    return f"{alert} · agent {agent} " in title and f"Agent {agent} " in text


@pytest.mark.servers
def test_failing_agent_reaches_slack_and_healthy_agent_stays_quiet(
    tmp_path: Path,
    library_port: int,
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    slack_receiver: HttpReceiver,
) -> None:
    """A failing agent's AgentCompletionRateLow arrives in Slack, routed by severity; the healthy agent never."""
    (tmp_path / "critical_url").write_text(f"{slack_receiver.url}/slack/critical\n")
    (tmp_path / "warning_url").write_text(f"{slack_receiver.url}/slack/warning\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(Params.short(window="1m", for_="0s", min_executions=5, interval="1s")))
    am = alertmanager_factory(
        render_alertmanager(
            AlertmanagerParams.short(
                slack_api_url_file=str(tmp_path / "warning_url"),
                critical_slack_api_url_file=str(tmp_path / "critical_url"),
            )
        )
    )

    with Workload() as workload:
        started = time.monotonic()
        prom = prometheus_factory(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{library_port}"]}]}
                ],
            },
            rule_files=[rules],
            alertmanager=am.address,
        )

        def describe() -> str:
            return (
                f"received: {slack_receiver.requests()!r}\nprometheus alerts: {prom.alerts()!r}\n"
                f"workload: {workload.counts} errors {workload.errors!r}\n{prom.log_tail(15)}\n{am.log_tail(15)}"
            )

        def first_message() -> bool:
            return any(_names(a, FAILING, ALERT) for _, a in _slack_messages(slack_receiver.requests()))

        try:
            prom.wait_for(first_message, timeout=FIRST_MESSAGE_TIMEOUT)
        except TimeoutError as exc:
            raise AssertionError(f"no Slack message for {FAILING}/{ALERT}\n{describe()}") from exc
        delivered = time.monotonic() - started
        time.sleep(SETTLE)
        held = [a for a in am.alerts() if a["labels"].get("agent") == FAILING]
        requests = slack_receiver.requests()

    print(f"\nfirst Slack message {delivered:.1f}s after Prometheus was started; {len(requests)} requests")
    assert not workload.errors, workload.errors
    messages = _slack_messages(requests)
    print(json.dumps([(r.path, r.json) for r in requests], indent=1, ensure_ascii=False))

    # The healthy agent, in the same run and at the same volume, produced no message at all.
    wrong = [r.body for r in requests if HEALTHY.encode() in r.body]
    assert not wrong, f"{HEALTHY} was named in Slack: {wrong!r}"
    assert all(r.json is not None for r in requests), "a non-JSON body reached the Slack webhook"

    # The failing agent's message: the alert, the agent, the measured value and its objective, links.
    path, message = next((p, a) for p, a in messages if _names(a, FAILING, ALERT))
    assert message["title"].startswith(f"[FIRING:1] {ALERT} · agent {FAILING} (critical)"), message["title"]
    measured = re.search(r"Agent invoice completed ([\d.]+)% of its finished executions over the last 1m "
                         r"\(objective 95%\)", message["text"])  # fmt: skip
    assert measured and 40 <= float(measured[1]) <= 60, message["text"]  # every other run fails
    assert message["color"] == "danger"
    assert f"var-agent={FAILING}" in message["title_link"]
    assert {b["text"] for b in message.get("actions", [])} == {"Dashboard", "Runbook"}

    # Routing follows the severity label: every message went to its severity's webhook, and
    # Alertmanager names the matching receiver for each of the agent's alerts.
    assert path == "/slack/critical"
    for p, a in messages:
        severity = "critical" if "(critical)" in a["title"] else "warning"
        assert p == f"/slack/{severity}", (p, a["title"])
    routed = {
        (a["labels"]["alertname"], a["labels"]["severity"], a["status"]["state"]): [r["name"] for r in a["receivers"]]
        for a in held
    }
    assert routed.get((ALERT, "critical", "active")) == ["critical"], routed
    for (_, severity, _), receivers in routed.items():
        assert receivers == [severity], routed
    # The per-trigger warning fired too, and AgentCompletionRateLow inhibited it (no second page).
    assert ("AgentTriggerCompletionRateLow", "warning", "suppressed") in routed, routed


# --------------------------------------------------------------------------- email and webhook (issue 13)

GRAFANA, RUNBOOK, JAEGER = "http://grafana.test:3000", "http://wiki.test/agents/runbook.html", "http://jaeger.test:16686"
SERVICE = "invoice-svc"  # the scrape target's `service` label: the Jaeger service of the agent's traces


def _jaeger_link_ok(url: str, window_s: float) -> None:
    """A Jaeger search for the failing agent's failed executions over the alert's window, ending now."""
    parsed = urllib.parse.urlsplit(url)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == f"{JAEGER}/search", url
    query = dict(urllib.parse.parse_qsl(parsed.query, strict_parsing=True))
    assert query["service"] == SERVICE, query
    assert json.loads(query["tags"]) == {sc.ATTR_GEN_AI_AGENT_NAME: FAILING, sc.ATTR_TASK_STATUS: "failed"}, query
    start, end = int(query["start"]), int(query["end"])
    assert end - start == window_s * 1_000_000, query
    assert abs(end / 1e6 - time.time()) < 120, query  # microseconds, at the alert's last evaluation
    assert query["lookback"] == "custom" and query["limit"] == "20", query


@pytest.mark.servers
def test_failing_agent_reaches_email_and_ticketing_webhook_with_links(
    tmp_path: Path,
    library_port: int,
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    slack_receiver: HttpReceiver,
) -> None:
    """AgentCompletionRateLow arrives by mail (STARTTLS, login) and as webhook JSON, with all three links."""
    (tmp_path / "slack_url").write_text(f"{slack_receiver.url}/slack\n")
    rules = tmp_path / "rules.yml"
    params = Params.short(window="1m", for_="0s", min_executions=5, interval="1s",
                          grafana_url=GRAFANA, runbook_base=RUNBOOK, jaeger_url=JAEGER)  # fmt: skip
    rules.write_text(render_rules(params))
    with SmtpSink(tmp_path) as smtp, HttpReceiver() as ticketing:
        (tmp_path / "smtp_password").write_text(smtp.password)
        (tmp_path / "ticket_token").write_text("t0ken-for-tickets\n")
        email = EmailParams(
            to="oncall@example.org", critical_to="pager@example.org", from_="alerts@example.org",
            smarthost=smtp.smarthost, auth_username=smtp.username, auth_password_file=str(tmp_path / "smtp_password"),
            tls_ca_file=str(smtp.ca_file),
        )  # fmt: skip
        webhook = WebhookParams(url=f"{ticketing.url}/tickets", bearer_token_file=str(tmp_path / "ticket_token"))
        am = alertmanager_factory(render_alertmanager(
            AlertmanagerParams.short(slack_api_url_file=str(tmp_path / "slack_url"), email=email, webhook=webhook)))

        with Workload() as workload:
            started = time.monotonic()
            prom = prometheus_factory(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [{
                        "job_name": sc.SCRAPE_JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{library_port}"], "labels": {"service": SERVICE}}],
                    }],
                },
                rule_files=[rules],
                alertmanager=am.address,
            )  # fmt: skip

            def arrived() -> bool:
                mails = [m for m in smtp.mails() if f"{ALERT} · agent {FAILING} " in m.subject]
                hooks = [r for r in ticketing.requests() if isinstance(r.json, dict)
                         and any(a["labels"].get("alertname") == ALERT for a in r.json.get("alerts", []))]  # fmt: skip
                return bool(mails and hooks)

            try:
                prom.wait_for(arrived, timeout=FIRST_MESSAGE_TIMEOUT)
            except TimeoutError as exc:
                raise AssertionError(
                    f"mails: {smtp.mails()!r}\nhooks: {ticketing.requests()!r}\nfailed logins {smtp.failed_logins}\n"
                    f"{prom.log_tail(15)}\n{am.log_tail(30)}"
                ) from exc
            delivered = time.monotonic() - started
            time.sleep(SETTLE)
            mails, hooks, slack = smtp.mails(), ticketing.requests(), slack_receiver.requests()

    print(f"\nmail and webhook {delivered:.1f}s after Prometheus was started; {len(mails)} mails, {len(hooks)} hooks")
    assert not workload.errors, workload.errors
    # The healthy agent, in the same run and at the same volume, is in no mail and no ticket.
    assert not [m.subject for m in mails if HEALTHY in m.subject or HEALTHY in m.body("plain")]
    assert not [r.body for r in hooks if HEALTHY.encode() in r.body]

    # The mail: over STARTTLS, logged in with the password from the file, to the critical address.
    mail: ReceivedMail = next(m for m in mails if f"{ALERT} · agent {FAILING} " in m.subject)
    assert mail.subject.startswith(f"[FIRING:1] {ALERT} · agent {FAILING} (critical)"), mail.subject
    assert mail.tls and mail.login == smtp.username and smtp.failed_logins == 0
    assert mail.rcpt_tos == ["pager@example.org"] and mail.mail_from == "alerts@example.org"
    text, page = mail.body("plain"), html.unescape(mail.body("html"))
    for body in (text, page):
        assert re.search(r"Agent invoice completed [\d.]+% of its finished executions over the last 1m", body), body
        assert f"{GRAFANA}/d/agent-overview?var-agent={FAILING}" in body
        assert f"{RUNBOOK}#{ALERT.lower()}" in body
    jaeger_in_mail = re.search(r'href="([^"]+)">Failed traces', page)
    assert jaeger_in_mail, page
    _jaeger_link_ok(jaeger_in_mail[1], 60)

    # The ticket: Alertmanager's webhook JSON, with the bearer token and the same links.
    hook = next(r for r in hooks if any(a["labels"].get("alertname") == ALERT for a in r.json["alerts"]))
    assert hook.path == "/tickets" and hook.headers.get("Authorization") == "Bearer t0ken-for-tickets"
    assert hook.json["version"] == "4" and hook.json["receiver"] == "critical" and hook.json["status"] == "firing"
    ticket = next(a for a in hook.json["alerts"] if a["labels"]["alertname"] == ALERT)
    assert ticket["labels"] == {"alertname": ALERT, "agent": FAILING, "severity": "critical"}
    notes = ticket["annotations"]
    assert notes["dashboard_url"] == f"{GRAFANA}/d/agent-overview?var-agent={FAILING}"
    assert notes["runbook_url"] == f"{RUNBOOK}#{ALERT.lower()}"
    _jaeger_link_ok(notes["jaeger_url"], 60)
    assert ticket["generatorURL"].startswith(prom.url)

    # Slack got the same alert, with the Jaeger link next to the dashboard and the runbook.
    attachment = next(a for _, a in _slack_messages(slack) if _names(a, FAILING, ALERT))
    link = re.search(r"<([^|>]+)\|Failed traces>", attachment["text"])
    assert link, attachment["text"]
    _jaeger_link_ok(link[1], 60)
