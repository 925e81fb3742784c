"""Self-tests of the real-server harness in tests/servers.py."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests.servers import (
    AlertmanagerServer,
    HttpReceiver,
    OtlpReceiver,
    PrometheusServer,
    ServerError,
    free_port,
    require_binary,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _scrape_config(port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }


@pytest.fixture
def app_registry() -> Iterator[tuple[CollectorRegistry, int]]:
    """A fresh registry served by prometheus_client on a free 127.0.0.1 port."""
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield registry, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_require_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing binary skips a local run but fails a CI run, with the install hint."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        require_binary("no-such-binary-for-harness")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-for-harness not installed"):
        require_binary("no-such-binary-for-harness")


@pytest.mark.servers
def test_prometheus_start_failure_reports_log_tail(tmp_path: Path) -> None:
    """A Prometheus that cannot start raises ServerError quoting its own log."""
    binary = require_binary("prometheus")
    server = PrometheusServer({"scrape_configs": [{"no_job_name": True}]}, tmp_path, binary=binary)
    with pytest.raises(ServerError, match=r"(?s)exited with code.*prometheus\.log"):
        server.start()
    assert server.pid is not None


@pytest.mark.servers
def test_prometheus_scrapes_counter(
    prometheus_factory: Callable[..., PrometheusServer], app_registry: tuple[CollectorRegistry, int]
) -> None:
    """Prometheus scrapes a prometheus_client server and the counter reads 3."""
    registry, port = app_registry
    counter = Counter("some_counter", "Harness self-test counter.", registry=registry)
    for _ in range(3):
        counter.inc()
    prom = prometheus_factory(_scrape_config(port))
    assert prom.wait_for(lambda: prom.query_value("some_counter_total") == 3, timeout=20)
    assert prom.query("up")[0]["metric"]["job"] == "app"
    assert [t["health"] for t in prom.targets()] == ["up"]


@pytest.mark.servers
def test_prometheus_stores_exemplars(
    prometheus_factory: Callable[..., PrometheusServer], app_registry: tuple[CollectorRegistry, int]
) -> None:
    """An exemplar observed in a histogram comes back from query_exemplars with its trace id."""
    registry, port = app_registry
    histogram = Histogram("harness_latency_seconds", "Harness self-test histogram.", registry=registry)
    histogram.observe(0.3, exemplar={"trace_id": TRACE_ID})
    prom = prometheus_factory(_scrape_config(port))

    def trace_ids() -> set[str]:
        now = time.time()
        found = prom.query_exemplars("harness_latency_seconds_bucket", now - 300, now + 60)
        return {ex["labels"].get("trace_id") for series in found for ex in series["exemplars"]}

    assert TRACE_ID in prom.wait_for(trace_ids, timeout=20)


@pytest.mark.servers
def test_prometheus_query_error_is_raised(
    prometheus_factory: Callable[..., PrometheusServer], app_registry: tuple[CollectorRegistry, int]
) -> None:
    """A bad PromQL expression raises ServerError carrying Prometheus's error text."""
    prom = prometheus_factory(_scrape_config(app_registry[1]))
    with pytest.raises(ServerError, match="bad_data"):
        prom.query("sum(")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_otlp_receiver_decodes_sdk_spans(otlp_receiver: OtlpReceiver, compression: Compression) -> None:
    """Spans exported by the real SDK arrive with ids, parents, attributes, events and status."""
    provider = TracerProvider(resource=Resource.create({"service.name": "harness"}))
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.endpoint, compression=compression, timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("harness.selftest")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("child") as child:
            child.set_attributes({"s": "x", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]})
            child.add_event("tool.called", {"tool": "search"})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    spans = {s.name: s for s in otlp_receiver.wait_for_spans(2, timeout=5)}
    parent_ctx, child_ctx = parent.get_span_context(), child.get_span_context()
    assert spans["parent"].trace_id == spans["child"].trace_id == f"{parent_ctx.trace_id:032x}"
    assert spans["parent"].parent_span_id is None
    assert spans["parent"].kind == SpanKind.SERVER.value + 1  # OTLP enum is SDK enum + 1
    assert spans["child"].span_id == f"{child_ctx.span_id:016x}"
    assert spans["child"].parent_span_id == spans["parent"].span_id
    assert spans["child"].attributes == {"s": "x", "i": 7, "f": 0.5, "b": True, "l": ["a", "b"]}
    assert [(e.name, e.attributes) for e in spans["child"].events] == [("tool.called", {"tool": "search"})]
    assert (spans["child"].status_code, spans["child"].status_message) == (2, "boom")
    assert spans["child"].resource_attributes["service.name"] == "harness"
    assert spans["child"].start_ns <= spans["child"].end_ns
    assert otlp_receiver.bad_requests == []


@pytest.mark.servers
def test_alertmanager_delivers_slack_message(
    alertmanager_factory: Callable[..., AlertmanagerServer], slack_receiver: HttpReceiver
) -> None:
    """An alert posted to Alertmanager reaches the Slack stand-in, firing then resolved."""
    config = {
        "route": {
            "receiver": "slack",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "slack",
                "slack_configs": [
                    {
                        "api_url": f"{slack_receiver.url}/services/T000/B000/XXXX",
                        "channel": "#alerts",
                        "send_resolved": True,
                    }
                ],
            }
        ],
    }
    am = alertmanager_factory(config)
    labels = {"alertname": "HarnessSelfTest", "severity": "warning"}
    am.post_alerts([{"labels": labels, "annotations": {"summary": "self-test"}}])
    assert [a["labels"]["alertname"] for a in am.alerts()] == ["HarnessSelfTest"]

    def titles(requests: list[Any]) -> list[str]:
        return [a.get("title", "") for r in requests if r.json for a in r.json.get("attachments", [])]

    firing = slack_receiver.wait_for(lambda rs: any("FIRING" in t for t in titles(rs)), timeout=10)
    assert firing[0].path == "/services/T000/B000/XXXX"
    assert firing[0].json["channel"] == "#alerts"
    assert "HarnessSelfTest" in titles(firing)[0]

    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    am.post_alerts([{"labels": labels, "endsAt": ended}])
    slack_receiver.wait_for(lambda rs: any("RESOLVED" in t for t in titles(rs)), timeout=10)


def _post(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items())


def test_otlp_receiver_fault_modes(otlp_receiver: OtlpReceiver) -> None:
    """Status, drop and hang modes answer as configured and are counted per mode."""
    url = otlp_receiver.endpoint
    otlp_receiver.set_mode("status", status=500)
    assert _post(url)[0] == 500
    otlp_receiver.set_mode("status", status=429, retry_after=7)
    status, headers = _post(url)
    assert (status, headers.get("Retry-After")) == (429, "7")

    otlp_receiver.set_mode("drop")
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        _post(url)

    otlp_receiver.set_mode("hang", seconds=1.0)
    started = time.monotonic()
    assert _post(url)[0] == 200
    assert 0.9 <= time.monotonic() - started < 4
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        _post(url, timeout=0.3)

    otlp_receiver.set_mode("ok")
    assert _post(url)[0] == 200
    assert dict(otlp_receiver.counts) == {"status": 2, "drop": 1, "hang": 2, "ok": 1}
    assert otlp_receiver.spans() == []


def test_otlp_receiver_stop_releases_hanging_request() -> None:
    """stop() ends a long "hang" at once, so shutdown is bounded."""
    receiver = OtlpReceiver().start()
    receiver.set_mode("hang", seconds=30)
    outcome: list[object] = []
    client = threading.Thread(target=lambda: outcome.append(_post(receiver.endpoint, timeout=10)))
    client.start()
    assert receiver.wait_for_spans(lambda _: receiver.counts["hang"] == 1, timeout=5) == []
    started = time.monotonic()
    receiver.stop()
    client.join(timeout=5)
    assert time.monotonic() - started < 3
    assert not client.is_alive()
    assert outcome and outcome[0][0] == 200  # type: ignore[index]
