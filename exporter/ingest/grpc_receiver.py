"""OTLP/gRPC, as an option: the `TraceService/Export` method on its own port (4317 by convention).

Needs `grpcio` (the `grpc` extra: `pip install 'agent-exporter[grpc]'`). A request goes through
`Receiver.take`, the path HTTP requests take, so derivation, forwarding and counting are the
same. Answers per the OTLP spec: UNAUTHENTICATED without the bearer token (metadata
`authorization: Bearer …`), RESOURCE_EXHAUSTED over the message size or when more than
`max_concurrent` × 4 calls are in progress (grpcio refuses them itself), UNAVAILABLE when the
forward queue is full (both retryable), partial success as over HTTP. The service's request
counter files gRPC answers under the HTTP code that means the same (200, 401, 503, 500).
"""

from __future__ import annotations

import hmac
from concurrent import futures
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .receiver import Receiver


def serve_grpc(
    receiver: Receiver,
    addr: str,
    port: int,
    *,
    token: str | None,
    max_message_bytes: int,
    max_concurrent: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
    client_auth_required: bool = False,
) -> tuple[Any, int]:
    """Start a gRPC server; returns it and its port. ImportError without grpcio, OSError if it cannot bind."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb

    expected = f"Bearer {token}".encode() if token else None

    class Servicer(pb.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:  # noqa: N802
            if expected is not None:
                given = dict(context.invocation_metadata()).get("authorization", "")
                if not hmac.compare_digest(str(given).encode("utf-8", "replace"), expected):
                    receiver.count(401)
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "bearer token required")
            if not receiver.slot():
                receiver.count(429)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many requests being decoded")
            try:
                accepted = receiver.take(request)
            except Exception:  # noqa: BLE001 - the service stays up
                receiver.count(500)
                context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                receiver.release()
            if accepted is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, "forward queue full")
                raise AssertionError("abort raises")  # for the type checker
            resp = ExportTraceServiceResponse()
            rejected, message = accepted
            if rejected or message:
                resp.partial_success.rejected_spans = rejected
                resp.partial_success.error_message = message
            return resp

    # grpcio waits for a unary call's message on a pool thread: a thread per call in progress, so
    # calls whose message trickles in hold a call's place, never the decoding slots (`slot()`).
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_concurrent * 4, thread_name_prefix="agent-exporter-grpc"),
        maximum_concurrent_rpcs=max_concurrent * 4,
        options=[("grpc.max_receive_message_length", max_message_bytes)],
    )
    pb.add_TraceServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
    target = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    if certfile and keyfile:
        with open(keyfile, "rb") as k, open(certfile, "rb") as c:
            pair = (k.read(), c.read())
        ca = None
        if client_cafile:
            with open(client_cafile, "rb") as f:
                ca = f.read()
        creds = grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=client_auth_required)
        bound = server.add_secure_port(target, creds)
    else:
        bound = server.add_insecure_port(target)
    if not bound:
        raise OSError(f"cannot bind OTLP/gRPC to {target}")
    server.start()
    return server, bound
