"""`exporter.ingest`: OTLP/HTTP in, the span bridge's metrics out, every span forwarded."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import CollectorRegistry

from exporter.ingest import IngestService, IngestSettings
from exporter.ingest.otlp import summaries
from exporter.spans.mapping import summarize
from tests.otlp_build import execution, new_span_id, new_trace_id, post, request, span, to_json
from tests.servers import OtlpReceiver, wait_until

Factory = Callable[..., IngestService]


@pytest.fixture
def ingest() -> Iterator[Factory]:
    """Build-and-start services on free ports (derivation by hand: `svc.derive()`); stopped at teardown."""
    made: list[IngestService] = []

    def make(**kw: Any) -> IngestService:
        kw.setdefault("port", 0)
        kw.setdefault("metrics_port", None)
        kw.setdefault("grace", 0.0)
        kw.setdefault("sweep_interval", 3600.0)
        svc = IngestService(IngestSettings(**kw), registry=CollectorRegistry()).start()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.stop(timeout=1.0)


def value(svc: IngestService, name: str, **labels: str) -> float:
    return svc.registry.get_sample_value(name, labels) or 0.0


def send(svc: IngestService, spans: list[Any], **kw: Any) -> tuple[int, dict[str, str], bytes]:
    assert svc.port is not None
    return post(svc.port, request(spans).SerializeToString(), **kw)


# ------------------------------------------------------------------------------- derivation


def test_executions_become_the_bridge_metrics(ingest: Factory) -> None:
    """A success, a tool error, a failure and an evaluation give exact counts per status and cause."""
    svc = ingest()
    spans = (
        execution(evaluation=("relevance", 0.8, "pass"))
        + execution(tool_error=True, task_id="task-2")
        + execution(fail="TimeoutError", tool=None, steps=1, task_id="task-3")
    )
    status, _, body = send(svc, spans)
    assert status == 200
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert svc.derive() == 3
    a = {"agent": "billing"}
    assert value(svc, "agent_executions_started_total", **a, trigger="webhook") == 3
    assert value(svc, "agent_executions_finished_total", **a, trigger="webhook", status="completed") == 1
    assert value(svc, "agent_executions_finished_total", **a, trigger="webhook", status="failed") == 2
    assert value(svc, "agent_execution_failures_total", **a, trigger="webhook", cause="tool_error") == 1
    assert value(svc, "agent_execution_failures_total", **a, trigger="webhook", cause="timeout") == 1
    assert value(svc, "agent_tool_calls_total", **a, tool="lookup", outcome="success") == 3
    assert value(svc, "agent_tool_calls_total", **a, tool="lookup", outcome="error") == 1
    assert value(svc, "agent_steps_total", **a, step="chat step0", status="passed") == 3
    assert value(svc, "agent_tokens_total", **a, step="chat step1", type="input") == 20
    assert value(svc, "agent_evaluations_total", **a, step="execution", evaluation="relevance", result="pass") == 1
    assert value(svc, "agent_ingest_spans_received_total") == len(spans)


def test_decoding_goes_through_the_shared_summarize(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTLP spans are summarised by spanmap.summarize itself (one mapping for bridge and ingest)."""
    calls: list[str] = []

    def spy(*args: Any) -> Any:
        calls.append(args[2])
        return summarize(*args)

    monkeypatch.setattr("exporter.ingest.otlp.summarize", spy)
    decoded = summaries(request(execution(steps=1, tool=None)))
    assert sorted(calls) == ["chat step0", "invoke_agent billing"]
    assert decoded.spans == 2 and decoded.rejected == 0


@pytest.mark.parametrize("how", ["json", "gzip", "chunked", "chunked-gzip"])
def test_json_gzip_and_chunked_bodies_are_decoded(ingest: Factory, how: str) -> None:
    """OTLP/JSON, gzip and chunked bodies without Content-Length (the Node.js exporter's) all count."""
    svc = ingest()
    req = request(execution())
    assert svc.port is not None
    if how == "json":
        status, headers, body = post(svc.port, to_json(req), content_type="application/json")
        assert json.loads(body) == {}
        assert headers["content-type"] == "application/json"
    else:
        status, _, _ = post(svc.port, req.SerializeToString(), gzipped="gzip" in how, chunked="chunked" in how)
    assert status == 200
    svc.derive()
    assert value(svc, "agent_executions_finished_total", agent="billing", trigger="webhook", status="completed") == 1


def test_an_execution_split_over_requests_is_counted_once(ingest: Factory) -> None:
    """Children before and after the root, in separate requests, and a retried request: one execution."""
    svc = ingest(grace=100.0)
    spans = execution(steps=3)
    root = spans[-1]
    assert send(svc, spans[:2])[0] == 200
    assert send(svc, [root])[0] == 200
    assert send(svc, [root])[0] == 200  # a sender's retry of the same request
    assert send(svc, spans[2:-1])[0] == 200
    assert svc.derive() == 0  # held for the grace period
    assert svc.derive(everything=True) == 1
    a = {"agent": "billing", "trigger": "webhook"}
    assert value(svc, "agent_executions_started_total", **a) == 1
    assert value(svc, "agent_tool_calls_total", agent="billing", tool="lookup", outcome="success") == 3
    assert send(svc, spans[:1])[0] == 200  # after assembly: late, counted, not derived
    svc.derive(everything=True)
    assert value(svc, "agent_executions_started_total", **a) == 1
    assert value(svc, "agent_ingest_spans_not_derived_total", reason="late") == 1


def test_trigger_and_task_id_come_from_attributes(ingest: Factory) -> None:
    """task.trigger names the trigger label; without it the trigger is `unknown`."""
    svc = ingest()
    spans = execution(agent="support", trigger="email")
    nameless = execution(agent="support")
    for kv in list(nameless[-1].attributes):
        if kv.key == "task.trigger":
            nameless[-1].attributes.remove(kv)
    send(svc, spans + nameless)
    svc.derive()
    assert value(svc, "agent_executions_started_total", agent="support", trigger="email") == 1
    assert value(svc, "agent_executions_started_total", agent="support", trigger="unknown") == 1


# ------------------------------------------------------------------------------- responses


def test_invalid_span_ids_get_a_partial_success(ingest: Factory) -> None:
    """Spans with a short trace id are rejected and counted, the rest accepted (OTLP partial success)."""
    svc = ingest()
    bad = span(b"\x01" * 8, "invoke_agent x", {})
    status, _, body = send(svc, [*execution(), bad])
    assert status == 200
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 1
    assert "invalid" in resp.partial_success.error_message
    assert value(svc, "agent_ingest_spans_rejected_total") == 1


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"\x0a\xff\xff\xff\x0f", "application/x-protobuf", 400),  # truncated: a length past the end
        (b"garbage that is not protobuf \xff\xfe", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', "application/json", 400),
        (b"[]", "application/json", 400),
        (b"hello", "text/plain", 415),
    ],
)
def test_malformed_bodies_are_refused_without_effect(
    ingest: Factory, body: bytes, content_type: str, code: int
) -> None:
    """Garbage, truncated protobuf, bad JSON and wrong content types get 4xx and change no metric."""
    svc = ingest()
    assert svc.port is not None
    status, headers, answer = post(svc.port, body, content_type=content_type)
    assert status == code
    if content_type == "application/x-protobuf":
        assert RpcStatus.FromString(answer).code == code
    assert value(svc, "agent_ingest_requests_total", code=str(code)) == 1
    assert value(svc, "agent_ingest_spans_received_total") == 0
    assert send(svc, execution())[0] == 200  # and the service still answers


def test_size_limits_answer_413(ingest: Factory) -> None:
    """Over max_body_bytes by Content-Length, by chunks, or by what a gzip body inflates to: 413."""
    svc = ingest(max_body_bytes=10_000)
    assert svc.port is not None
    big = request(execution(steps=200)).SerializeToString()
    assert len(big) > 10_000
    assert post(svc.port, big)[0] == 413
    assert post(svc.port, big, chunked=True)[0] == 413
    bomb = b"\x0a" + b"\x00" * 5_000_000
    assert len(gzip.compress(bomb)) < 10_000
    assert post(svc.port, bomb, gzipped=True)[0] == 413
    assert value(svc, "agent_ingest_requests_total", code="413") == 3
    assert send(svc, execution())[0] == 200


def test_a_fifty_megabyte_body_is_refused_and_read_away(ingest: Factory) -> None:
    """A 50 MB body gets 413 (the sender sees the answer, not a reset), the service stays up."""
    svc = ingest()
    assert svc.port is not None
    status, _, _ = post(svc.port, b"\x00" * 50_000_000)
    assert status == 413
    assert send(svc, execution())[0] == 200


def test_other_paths_and_methods(ingest: Factory) -> None:
    """Only POST /v1/traces is served: 404 elsewhere, 405 for GET."""
    svc = ingest()
    assert svc.port is not None
    assert post(svc.port, b"", path="/v1/metrics")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{svc.port}/v1/traces", timeout=5)
    assert info.value.code == 405


def test_bearer_token_is_required_when_set(ingest: Factory) -> None:
    """Without the token: 401 and no effect; with it: accepted."""
    svc = ingest(token="s3cret")
    spans = execution()
    assert send(svc, spans)[0] == 401
    assert send(svc, spans, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert value(svc, "agent_ingest_spans_received_total") == 0
    assert send(svc, spans, headers={"Authorization": "Bearer s3cret"})[0] == 200
    svc.derive()
    assert value(svc, "agent_executions_started_total", agent="billing", trigger="webhook") == 1


def test_tls_serves_https_only(ingest: Factory, tmp_path: Any) -> None:
    """With certfile/keyfile the receiver speaks TLS: an HTTPS client is answered, plain HTTP is not."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    svc = ingest(certfile=str(certfile), keyfile=str(keyfile))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    req = urllib.request.Request(
        f"https://127.0.0.1:{svc.port}/v1/traces",
        data=request(execution()).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        assert resp.status == 200
    assert svc.port is not None
    with pytest.raises((ConnectionError, OSError, Exception)):
        post(svc.port, b"", timeout=3)


def test_connections_over_the_limit_get_503(ingest: Factory) -> None:
    """Past max_connections open connections (a thread each), a new one is answered 503 and closed."""
    svc = ingest(max_connections=2, max_concurrent=1)
    assert svc.port is not None
    idle = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(2)]
    try:
        extra = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
        with extra:
            answer = extra.recv(200)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        assert value(svc, "agent_ingest_requests_total", code="503") == 1
    finally:
        for c in idle:
            c.close()
    wait_until(lambda: send(svc, execution())[0] == 200, timeout=10)


def test_concurrency_limit_answers_429(ingest: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_concurrent requests being decoded, one more (read whole) waits, then gets 429 with Retry-After."""
    from exporter.ingest import receiver

    svc = ingest(max_concurrent=1)
    assert svc.port is not None
    release, entered = threading.Event(), threading.Event()
    real_parse = receiver.parse

    def slow_parse(body: bytes, kind: str) -> Any:
        entered.set()
        release.wait(30)
        return real_parse(body, kind)

    monkeypatch.setattr(receiver, "parse", slow_parse)
    held = threading.Thread(target=send, args=(svc, execution()))
    held.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        status, headers, _ = send(svc, [])
        assert status == 429 and headers["retry-after"] == "1"
        assert time.monotonic() - started >= receiver.DECODE_WAIT
    finally:
        release.set()
        held.join()
    monkeypatch.undo()
    assert send(svc, execution())[0] == 200
    assert value(svc, "agent_ingest_requests_total", code="429") == 1


def test_bodies_over_the_pending_budget_get_503(ingest: Factory) -> None:
    """A slow body holding max_pending_bytes: another body gets 503 with Retry-After, a decoding slot stays free."""
    svc = ingest(max_body_bytes=1000, max_pending_bytes=1000, max_queue_bytes=1000)
    assert svc.port is not None
    slow = socket.create_connection(("127.0.0.1", svc.port))
    try:
        slow.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 1000\r\n\r\n\x0a")  # fmt: skip

        def refused() -> tuple[int, dict[str, str], bytes] | None:
            answer = send(svc, [])
            return answer if answer[0] == 503 else None

        status, headers, _ = wait_until(refused, timeout=10)
        assert headers["retry-after"] == "1"
    finally:
        slow.close()
    wait_until(lambda: send(svc, execution())[0] == 200, timeout=10)


# ------------------------------------------------------------------------------- forwarding


def test_every_span_is_forwarded_unchanged(ingest: Factory, otlp_receiver: OtlpReceiver) -> None:
    """Protobuf and JSON requests reach the next hop span for span, with attributes and events."""
    svc = ingest(forward=otlp_receiver.endpoint)
    first = execution(evaluation=("relevance", 0.8, "pass"))
    second = execution(agent="support")
    assert send(svc, first)[0] == 200
    assert svc.port is not None
    assert post(svc.port, to_json(request(second)), content_type="application/json")[0] == 200
    got = otlp_receiver.wait_for_spans(len(first) + len(second))
    sent = {s.span_id.hex(): s for s in first + second}
    assert {s.span_id for s in got} == set(sent)
    root = next(s for s in got if s.span_id == first[-1].span_id.hex())
    assert root.attributes["gen_ai.agent.name"] == "billing"
    assert root.events[0].attributes["gen_ai.evaluation.score.value"] == 0.8
    assert root.scope_name == "my-node-agent"
    wait_until(lambda: value(svc, "agent_ingest_forward_spans_total", outcome="sent") == len(sent), timeout=10)


def test_forwarding_retries_then_counts_failures(ingest: Factory, otlp_receiver: OtlpReceiver) -> None:
    """A 503 from the next hop is retried until it takes the spans; a 400 is dropped and counted."""
    svc = ingest(forward=otlp_receiver.endpoint)
    otlp_receiver.set_mode("status", status=503)
    spans = execution()
    assert send(svc, spans)[0] == 200
    wait_until(lambda: otlp_receiver.counts["status"] >= 2, timeout=10)
    otlp_receiver.set_mode("ok")
    otlp_receiver.wait_for_spans(len(spans))
    otlp_receiver.set_mode("status", status=400)
    assert send(svc, execution())[0] == 200
    wait_until(lambda: value(svc, "agent_ingest_forward_spans_total", outcome="failed") == len(spans), timeout=10)


def test_a_full_forward_queue_answers_503_without_effect(ingest: Factory, otlp_receiver: OtlpReceiver) -> None:
    """When the next hop is stuck and the queue is full: 503 + Retry-After, nothing derived."""
    otlp_receiver.set_mode("hang", seconds=30)
    svc = ingest(forward=otlp_receiver.endpoint, max_queue_bytes=3000, max_body_bytes=3000)
    assert svc.port is not None
    # the 2 posting workers hold one request each, the queue a few more, then 503
    codes = [post(svc.port, request(execution()).SerializeToString())[0] for _ in range(12)]
    assert 503 in codes
    refused = post(svc.port, request(execution(agent="refused")).SerializeToString())
    assert refused[0] == 503 and refused[1]["retry-after"] == "1"
    svc.derive(everything=True)
    assert value(svc, "agent_executions_started_total", agent="refused", trigger="webhook") == 0
    assert value(svc, "agent_executions_started_total", agent="billing", trigger="webhook") == codes.count(200)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("forward", "addr", "itself"),
    [
        ("http://127.0.0.1:{p}/v1/traces", "127.0.0.1", True),
        ("http://localhost:{p}/v1/traces", "127.0.0.1", True),
        ("http://0.0.0.0:{p}/v1/traces", "127.0.0.1", True),
        ("http://[::1]:{p}/v1/traces", "127.0.0.1", True),
        ("http://LOCALHOST.:{p}/v1/traces", "0.0.0.0", True),
        ("http://127.0.0.1:{p}/v1/traces", "::", True),
        ("http://[::ffff:127.0.0.1]:{p}/v1/traces", "127.0.0.1", True),
        ("http://10.1.2.3:{p}/v1/traces", "10.1.2.3", True),
        ("http://127.0.0.1:{q}/v1/traces", "127.0.0.1", False),
        ("http://jaeger:{p}/v1/traces", "0.0.0.0", False),
        ("http://127.0.0.1:{p}/v1/traces", "10.1.2.3", False),
        ("http://10.1.2.4:{p}/v1/traces", "10.1.2.3", False),
    ],
)
def test_forwards_to_itself_knows_this_listeners_spellings(forward: str, addr: str, itself: bool) -> None:
    """The same port and a host that is this listener (its address, loopback or wildcard spellings) is a self-loop."""
    from exporter.ingest.service import forwards_to_itself

    assert forwards_to_itself(forward.format(p=4318, q=4319), addr, 4318) is itself


def test_a_forward_to_itself_is_refused_at_start() -> None:
    """`--forward` naming the service's own OTLP address: exit 2 at start, with a message naming the options."""
    port = _free_port()
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "ingest", "--port", str(port), "--metrics-port", "0",
         "--forward", f"http://localhost:{port}/v1/traces"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"--forward http://localhost:{port}/v1/traces is this service's own OTLP listener" in done.stderr
    assert f"(--addr 127.0.0.1 --port {port})" in done.stderr and "another --port" in done.stderr
    with pytest.raises(ValueError, match="own OTLP listener"):
        IngestSettings(port=port, forward=f"http://0.0.0.0:{port}/v1/traces")


def test_a_forward_to_the_port_it_was_given_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With --port 0 the check is made against the port bound: a forward there is refused and nothing stays bound."""
    from exporter.ingest import receiver

    port = _free_port()

    def on_that_port(rcv: Any, addr: str, _: int, **kw: Any) -> Any:
        return receiver.serve(rcv, addr, port, **kw)  # what --port 0 may give

    monkeypatch.setattr("exporter.ingest.service.serve", on_that_port)
    svc = IngestService(IngestSettings(port=0, metrics_port=None, forward=f"http://127.0.0.1:{port}/v1/traces"))
    with pytest.raises(ValueError, match="own OTLP listener"):
        svc.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # released


def test_a_loop_through_a_second_hop_is_dropped_and_counted(ingest: Factory) -> None:
    """A forwards to B, B back to A: each derives the execution once, A drops and counts what came back."""
    port_a = _free_port()
    b = ingest(forward=f"http://127.0.0.1:{port_a}/v1/traces")
    a = ingest(port=port_a, forward=f"http://127.0.0.1:{b.port}/v1/traces", metrics_port=0)
    spans = execution(steps=2)  # 5 spans
    assert send(a, spans)[0] == 200
    wait_until(lambda: value(a, "agent_ingest_spans_looped_total") == 5, timeout=10)
    wait_until(lambda: value(b, "agent_ingest_forward_spans_total", outcome="sent") == 5, timeout=10)
    time.sleep(1.0)  # a multiplying loop would go on meanwhile
    a.derive()
    b.derive()
    for svc in (a, b):
        assert value(svc, "agent_executions_started_total", agent="billing", trigger="webhook") == 1
        assert value(svc, "agent_tool_calls_total", agent="billing", tool="lookup", outcome="success") == 2
        assert value(svc, "agent_ingest_forward_spans_total", outcome="sent") == 5
    assert value(a, "agent_ingest_spans_received_total") == 10  # its 5, then the same 5 back
    assert value(a, "agent_ingest_spans_looped_total") == 5
    assert value(a, "agent_ingest_spans_not_derived_total", reason="late") == 0
    assert value(b, "agent_ingest_spans_received_total") == 5
    assert value(b, "agent_ingest_spans_looped_total") == 0
    assert value(a, "agent_ingest_requests_total", code="200") == 2
    text = urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/metrics", timeout=5).read().decode()
    assert "agent_ingest_spans_looped_total 5.0" in text


def test_looped_spans_get_a_partial_success(ingest: Factory, otlp_receiver: OtlpReceiver) -> None:
    """Forwarded resources name the instances they went through; spans back at one are rejected, not derived."""
    first = ingest(forward=otlp_receiver.endpoint)
    assert send(first, execution())[0] == 200
    got = otlp_receiver.wait_for_spans(5)
    assert {tuple(s.resource_attributes["agent_exporter.ingest.via"]) for s in got} == {(first.instance_id,)}
    assert first.port is not None
    back = request(execution(agent="again"))
    back.resource_spans[0].resource.attributes.add(key="agent_exporter.ingest.via").value.array_value.values.add(
        string_value=first.instance_id
    )
    status, _, body = post(first.port, back.SerializeToString())
    answer = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and answer.partial_success.rejected_spans == 5
    assert "forwarding loop" in answer.partial_success.error_message
    first.derive()
    assert value(first, "agent_executions_started_total", agent="again", trigger="webhook") == 0
    assert value(first, "agent_ingest_spans_looped_total") == 5
    time.sleep(0.5)
    assert len(otlp_receiver.wait_for_spans(5)) == 5  # not forwarded again


def test_a_python_sdk_exporter_is_a_sender_too(ingest: Factory) -> None:
    """The OpenTelemetry SDK's OTLP/HTTP exporter posts to the service as to any collector."""
    svc = ingest()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{svc.port}/v1/traces")))
    tracer = tp.get_tracer("py-agent")
    root_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "py", "task.trigger": "cron"}
    with tracer.start_as_current_span("invoke_agent py", attributes=root_attrs):
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
            pass
    tp.shutdown()
    svc.derive()
    assert value(svc, "agent_steps_total", agent="py", step="chat m", status="passed") == 1


def test_metrics_endpoint_serves_the_derived_metrics(ingest: Factory) -> None:
    """/metrics on metrics_port shows the agent_* and agent_ingest_* families."""
    svc = ingest(metrics_port=0)
    send(svc, execution())
    svc.derive()
    text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5).read().decode()
    assert 'agent_executions_finished_total{agent="billing",status="completed",trigger="webhook"} 1.0' in text
    assert "agent_ingest_spans_received_total 5.0" in text


def test_settings_are_checked() -> None:
    """Bad settings are a ValueError at construction."""
    with pytest.raises(ValueError, match="keyfile"):
        IngestSettings(certfile="c.pem")
    with pytest.raises(ValueError, match="token"):
        IngestSettings(token="two words")
    with pytest.raises(ValueError, match="max_queue_bytes"):
        IngestSettings(max_queue_bytes=1000)
    with pytest.raises(ValueError, match="forward URL"):
        IngestService(IngestSettings(port=0, metrics_port=None, forward="ftp://x")).start()


def test_cli_serves_and_exits_on_sigterm(tmp_path: Any) -> None:
    """`agent-exporter ingest` binds, answers OTLP, and exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "ingest", "--port", "0", "--metrics-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "OTLP on 127.0.0.1:" in line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        tid = new_trace_id()
        assert post(port, request([span(tid, "x", {}, span_id=new_span_id())]).SerializeToString())[0] == 200
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_span_with_a_remote_parent_completes_its_trace(ingest: Factory) -> None:
    """An agent span whose parent is in another service (Span.flags: parent is remote) acts as the
    root: the trace is derived after the grace period, not after the trace timeout."""
    svc = ingest(grace=0.0, trace_timeout=3600.0)
    spans = execution()
    spans[-1].parent_span_id = b"\x07" * 8
    assert send(svc, spans)[0] == 200
    assert svc.derive() == 0  # a plain parent: held for the timeout
    svc2 = ingest(grace=0.0, trace_timeout=3600.0)
    spans = execution()
    spans[-1].parent_span_id = b"\x07" * 8
    spans[-1].flags = 0x100 | 0x200 | 0x01
    assert send(svc2, spans)[0] == 200
    assert svc2.derive() == 1
    assert value(svc2, "agent_executions_started_total", agent="billing", trigger="webhook") == 1


def test_a_bug_while_decoding_answers_500_and_the_service_stays_up(
    ingest: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the mapping is a 500 for that request only; the next one is served."""
    svc = ingest()

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("exporter.ingest.otlp.summarize", broken)
    assert send(svc, execution())[0] == 500
    monkeypatch.undo()
    assert send(svc, execution())[0] == 200
    assert value(svc, "agent_ingest_requests_total", code="500") == 1


def test_derived_executions_reach_the_task_store(ingest: Factory, tmp_path: Any) -> None:
    """`agent-exporter ingest --task-store`: agents in other languages appear in the task list."""
    from exporter.tasks.backend import Backend

    url = f"sqlite:///{tmp_path}/tasks.db"
    svc = ingest(task_store=url)
    spans = execution(task_id="node-1") + execution(tool_error=True, task_id="node-2")
    assert send(svc, spans)[0] == 200
    assert svc.derive() == 2
    assert svc.tasks is not None and svc.tasks.flush(10)
    backend = Backend(url)
    try:
        got = {r["task_id"]: r for r in backend.fetch("SELECT * FROM agent_tasks")}
    finally:
        backend.close()
    assert {t: (r["agent"], r["trigger"], r["status"], r["cause"]) for t, r in got.items()} == {
        "node-1": ("billing", "webhook", "completed", None),
        "node-2": ("billing", "webhook", "failed", "tool_error"),
    }
    assert got["node-1"]["input_tokens"] == 20 and got["node-1"]["steps_done"] == 2
    assert value(svc, "agent_executions_finished_total", agent="billing", trigger="webhook", status="failed") == 1
