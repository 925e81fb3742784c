"""`exporter.ingest.grpc_receiver`: OTLP/gRPC in, through the same path as OTLP/HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from prometheus_client import CollectorRegistry

from exporter.ingest import IngestService, IngestSettings
from tests.otlp_build import execution, request, span
from tests.servers import OtlpReceiver


@pytest.fixture
def grpc_service(otlp_receiver: OtlpReceiver) -> Iterator[IngestService]:
    """A service with gRPC on a free port, a token, forwarding to the sink; derivation by hand."""
    svc = IngestService(
        IngestSettings(port=0, grpc_port=0, metrics_port=None, grace=0.0, sweep_interval=3600.0, token="t0k",
                       forward=otlp_receiver.endpoint),
        registry=CollectorRegistry(),
    ).start()  # fmt: skip
    yield svc
    svc.stop(timeout=1.0)


def _stub(svc: IngestService) -> Iterator[TraceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
        yield TraceServiceStub(channel)


def test_grpc_export_is_derived_and_forwarded(grpc_service: IngestService, otlp_receiver: OtlpReceiver) -> None:
    """An Export call counts the execution like an HTTP request, and its spans reach the next hop."""
    spans = execution(tool_error=True)
    for stub in _stub(grpc_service):
        resp = stub.Export(request(spans), metadata=[("authorization", "Bearer t0k")], timeout=10)
        assert not resp.HasField("partial_success")
    grpc_service.derive()
    reg = grpc_service.registry
    labels = {"agent": "billing", "trigger": "webhook", "cause": "tool_error"}
    assert reg.get_sample_value("agent_execution_failures_total", labels) == 1
    got = otlp_receiver.wait_for_spans(len(spans))
    assert {s.span_id for s in got} == {s.span_id.hex() for s in spans}


def test_grpc_without_token_is_unauthenticated(grpc_service: IngestService) -> None:
    """No bearer token: UNAUTHENTICATED, nothing received."""
    for stub in _stub(grpc_service):
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request(execution()), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_service.registry.get_sample_value("agent_ingest_spans_received_total") == 0
    assert grpc_service.registry.get_sample_value("agent_ingest_requests_total", {"code": "401"}) == 1


def test_grpc_partial_success_for_invalid_ids(grpc_service: IngestService) -> None:
    """A span with a short trace id is rejected in the partial success, as over HTTP."""
    for stub in _stub(grpc_service):
        bad = span(b"\x01" * 4, "x", {})
        resp = stub.Export(request([*execution(), bad]), metadata=[("authorization", "Bearer t0k")], timeout=10)
        assert resp.partial_success.rejected_spans == 1
