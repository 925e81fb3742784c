"""Secrets never leave through telemetry (issue 7, point 6).

A corpus of secret-looking keys and values goes into every field an agent can hand the
library (captured input and output, descriptions, explanations, branch reasons, failure
messages, exception messages, a tool name) with content capture on. None of the secret parts
may appear in spans (in memory and as received over OTLP), in logs (structlog and stdlib
logging) or in the metrics exposition. And the Slack webhook URL, read by Alertmanager from a
file, never appears in Alertmanager's log, even at debug level and when delivery fails.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from structlog.testing import capture_logs

import exporter
from exporter import testing
from tests.servers import AlertmanagerServer, HttpReceiver, OtlpReceiver

SLACK_PATH = "/services/T0AGENTX1/B0AGENTX2/fAkEsEcReTwEbHoOk0123456"
SLACK_URL = "https://hooks.slack.com" + SLACK_PATH

# (the text an agent might hand over, the secret part that must never come out)
SECRET_VALUES = [
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNlY3JldA",
     "eyJzdWIiOiJhZ2VudCJ9"),
    ("authorization=Basic YWxhZGRpbjpvcGVuc2VzYW1l", "YWxhZGRpbjpvcGVuc2VzYW1l"),
    ("using api_key=AKIAIOSFODNN7EXAMPLE for s3", "AKIAIOSFODNN7EXAMPLE"),
    ("openai key sk-live9sd8f7g6h5j4k3l2m1n0bvcx in env", "sk-live9sd8f7g6h5j4k3l2m1n0bvcx"),
    ("login with password: hunter2-Sup3rS3cret!", "hunter2-Sup3rS3cret!"),
    (f"posting the summary to {SLACK_URL} now", SLACK_PATH),
    ("slack bot xo" "xb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("gh token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("-----BEGIN RSA " "PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bqSeCrEtKeYmAtErIaL\n-----END RSA PRIVATE KEY-----",
     "MIIEowIBAAKCAQEA7bqSeCrEtKeYmAtErIaL"),
    ("db at postgres://admin:Pg-Pa55word-xyz@db.internal:5432/app", "Pg-Pa55word-xyz"),
    ("token=tok_live_Qm9vYmFyQmF6cXV4", "tok_live_Qm9vYmFyQmF6cXV4"),
]  # fmt: skip
SECRET_KEYS = {
    "password": "plainpw-Zx9-kept-secret",
    "api_key": "key-Qw8-kept-secret",
    "Authorization": "Token tok-Er7-kept-secret",
    "X-Api-Key": "xapikey-Rt5-kept-secret",
    "client_secret": "clientsecret-Yu4-kept-secret",
    "access_token": "accesstoken-Io3-kept-secret",
    "cookie": "session=sess-Ty6-kept-secret",
    "private_key": "privkey-Pa2-kept-secret",
    "slack_webhook": SLACK_URL,
}
NEEDLES = [needle for _, needle in SECRET_VALUES] + [v.split("=")[-1].split()[-1] for v in SECRET_KEYS.values()]
TEXT = " | ".join(text for text, _ in SECRET_VALUES)


class CredentialError(Exception):
    """An agent error whose message carries a secret (they do)."""


def workload() -> None:
    """Every free-text and content entry point, fed with the corpus."""
    payload: dict[str, Any] = {
        "headers": dict(SECRET_KEYS),
        "messages": [text for text, _ in SECRET_VALUES],
        "nested": {"config": {**SECRET_KEYS, "note": TEXT}, "list": [("Authorization", SECRET_VALUES[0][0])]},
    }
    with exporter.execution("secrets", trigger="api", task_id="t-1", description=TEXT) as run:
        with run.step("fetch", tool="http") as step:
            step.record_input(payload)
            step.record_output(TEXT)
            step.evaluate("leak-check", score=0.5, explanation=TEXT)
            step.branch("post", not_selected=[SLACK_URL], condition=TEXT, reason=TEXT)
            step.flag_for_review(TEXT)
            with pytest.raises(CredentialError), step.tool_call(SLACK_URL):
                raise CredentialError(TEXT)
        with pytest.raises(CredentialError), run.step("again"):
            raise CredentialError(f"auth failed: {TEXT}")
    with exporter.execution("secrets", trigger="api", description=TEXT) as run:
        run.fail("tool_error", TEXT)
    with exporter.execution("secrets", trigger="api") as run:
        run.cancel(TEXT)
    with pytest.raises(CredentialError), exporter.execution("secrets", trigger="api"):
        raise CredentialError(TEXT)


def assert_clean(what: str, text: str) -> None:
    leaked = [n for n in NEEDLES if n in text]
    assert not leaked, f"{what} leaks {leaked}"


def span_text(spans: list[Any]) -> str:
    return "\n".join(s.to_json() for s in spans)


def test_corpus_needles_are_real() -> None:
    """The corpus is not vacuous: every needle is in what the workload hands over."""
    handed = TEXT + repr(SECRET_KEYS)
    assert all(n in handed for n in NEEDLES)


def test_no_secret_in_spans_logs_or_metrics(caplog: pytest.LogCaptureFixture) -> None:
    """Capture on, debug logging on: no secret in spans, structlog events, stdlib logs or /metrics."""
    caplog.set_level(logging.DEBUG)
    with testing.capture(log_level="debug", capture_content=True) as cap, capture_logs() as events:
        workload()
        spans = cap.spans()
        assert any("task.step.input" in s.attributes for s in spans), "content capture did not run"
        assert any(e.name == "exception" for s in spans for e in s.events)
        assert_clean("spans", span_text(spans))
        assert_clean("structlog events", repr(events))
        assert_clean("stdlib logs", caplog.text + repr([r.getMessage() for r in caplog.records]))
        assert_clean("text exposition", generate_latest(cap.registry).decode())
        assert_clean("OpenMetrics exposition", generate_openmetrics(cap.registry).decode())
    assert len(events) >= 5


def test_no_secret_in_spans_received_over_otlp(caplog: pytest.LogCaptureFixture) -> None:
    """The same workload exported over OTLP/HTTP: the receiver sees no secret."""
    caplog.set_level(logging.DEBUG)
    with OtlpReceiver() as receiver:
        exporter.configure(
            "secrets", metrics_port=None, registry=testing.fresh_registry(), otlp_endpoint=receiver.url,
            set_global_tracer_provider=False, log_level="debug",
        )  # fmt: skip
        with capture_logs() as events:
            workload()
        exporter.shutdown(timeout=5)
        spans = receiver.wait_for_spans(lambda s: sum(x.name.startswith("invoke_workflow") for x in s) >= 4)
        assert_clean("OTLP spans", repr(spans))
        assert_clean("structlog events", repr(events))
        assert_clean("stdlib logs", caplog.text)


def test_structlog_rendered_output_has_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """structlog's default rendering, once the app configures structlog (to stdout), carries no secret either."""
    structlog.reset_defaults()
    structlog.configure()  # the application's choice: structlog's defaults, printing to stdout
    with testing.capture(log_level="debug"):
        workload()
    out = capsys.readouterr()
    assert "execution_failed" in out.out
    assert_clean("stdout/stderr", out.out + out.err)


@pytest.mark.servers
def test_slack_webhook_url_never_in_alertmanager_log(
    alertmanager_factory: Any, slack_receiver: HttpReceiver, tmp_path: Path
) -> None:
    """The project's Alertmanager config, webhook URL from a file: delivered, and never logged."""
    render = pytest.importorskip("alert_rules.render")
    secret_path = "/services/T0FAKE000/B0FAKE000/sUpErSeCrEtWeBhOoKpAtH42"
    url_file = tmp_path / "slack_webhook_url"
    url_file.write_text(f"{slack_receiver.url}{secret_path}\n")
    config = render.render_alertmanager(render.AlertmanagerParams.short(str(url_file)))
    am: AlertmanagerServer = alertmanager_factory(config, extra_args=["--log.level=debug"])

    def alert(name: str, severity: str) -> dict[str, Any]:
        return {
            "labels": {"alertname": name, "severity": severity, "agent": "invoice"},
            "annotations": {"summary": "s", "description": "d", "dashboard_url": "http://g/d", "runbook_url": "http://r"},
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    am.post_alerts([alert("AgentCompletionRateLow", "critical")])
    slack_receiver.wait_for(lambda reqs: any(r.path == secret_path for r in reqs), timeout=30)
    slack_receiver.status = 500  # a failing delivery is where URLs tend to end up in error logs
    am.post_alerts([alert("AgentRuntimeHigh", "warning")])
    slack_receiver.wait_for(lambda reqs: len(reqs) >= 2, timeout=30)
    slack_receiver.stop()  # connection refused: Go's error text would name the URL unless redacted
    am.post_alerts([alert("AgentToolErrorRateHigh", "warning")])
    am.wait_for(lambda: "connection refused" in am.log_path.read_text(errors="replace"), timeout=30)
    am.stop()
    log = am.log_path.read_text(errors="replace")
    assert "Notify success" in log and "unexpected status code 500" in log, "delivery paths not exercised"
    assert "T0FAKE000" not in log and "sUpErSeCrEtWeBhOoKpAtH42" not in log, am.log_tail(60)
