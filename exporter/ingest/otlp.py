"""OTLP/HTTP trace bodies: decoding (protobuf, JSON, gzip, bounded), and spans to `SpanSummary`.

The summaries come from `spanmap.summarize`, the function the in-process span bridge uses: an
OTLP span is turned into the same plain values (ids, name, attributes, scope, status, events,
times), so both paths classify and assemble spans with one piece of code.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ..spans.mapping import SpanSummary, summarize

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
# Span.flags: the sender knows whether the parent is remote (HAS_IS_REMOTE) and it is (IS_REMOTE).
REMOTE_PARENT = 0x100 | 0x200
# A resource attribute on what the service forwards: the ids of the ingest instances the spans
# went through (a string array). A resource attribute survives a Collector (a header would not),
# so spans that come back to an instance whose id they carry are a forwarding loop.
VIA: Final = "agent_exporter.ingest.via"


class BadRequest(ValueError):
    """The body cannot be decoded: the answer is 400 (the sender must not retry it)."""


class TooLarge(ValueError):
    """The body (or what it inflates to) is over the size limit: the answer is 413."""


def media_type(content_type: str | None) -> str | None:
    """`application/x-protobuf` or `application/json` (parameters ignored), else None."""
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    return base if base in (PROTOBUF, JSON) else None


def inflate(body: bytes, limit: int) -> bytes:
    """Gunzip `body`, refusing to produce more than `limit` bytes (a gzip bomb stops there)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"bad gzip body: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body inflates to more than {limit} bytes")
    if not d.eof:
        raise BadRequest("truncated gzip body")
    return out


def parse(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest from a protobuf or OTLP/JSON body."""
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise BadRequest(f"malformed protobuf: {exc}") from exc
        return request
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise BadRequest("the JSON body is not an object")
        _hex_ids_to_base64(data)
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except BadRequest:
        raise
    except (ValueError, TypeError, json_format.ParseError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(data: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64 for bytes fields."""
    for rs in _list(data.get("resourceSpans")):
        for ss in _list(_dict(rs).get("scopeSpans")):
            for span in _list(_dict(ss).get("spans")):
                _convert_ids(_dict(span))
                for link in _list(_dict(span).get("links")):
                    _convert_ids(_dict(link))


def _convert_ids(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        v = obj.get(key)
        if isinstance(v, str) and v:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(v)).decode("ascii")
            except ValueError as exc:
                raise BadRequest(f"{key} is not hex: {v[:40]!r}") from exc


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise BadRequest("expected a JSON array")
    return v


def _dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise BadRequest("expected a JSON object")
    return v


def response(kind: str, rejected: int, message: str) -> bytes:
    """The 200 answer; `partial_success` set when spans were rejected or there is a warning."""
    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    if kind == JSON:
        return str(json_format.MessageToJson(resp, indent=None)).encode()
    return bytes(resp.SerializeToString())


def error_body(kind: str | None, code: int, message: str) -> tuple[bytes, str]:
    """An error answer's body: a `google.rpc.Status`, as the OTLP spec asks."""
    from google.rpc.status_pb2 import Status

    status = Status(code=code, message=message)
    if kind == JSON:
        return str(json_format.MessageToJson(status, indent=None)).encode(), JSON
    return bytes(status.SerializeToString()), PROTOBUF


# ------------------------------------------------------------------------------- spans


def value(v: AnyValue) -> Any:
    """An attribute value as the SDK would hold it (arrays as tuples; maps and bytes kept raw)."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "bool_value":
        return v.bool_value
    if which == "double_value":
        return v.double_value
    if which == "array_value":
        return tuple(value(x) for x in v.array_value.values)
    if which == "bytes_value":
        return v.bytes_value
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return None


def attributes(pairs: Any) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        kv_: KeyValue = kv
        out[kv_.key] = value(kv_.value)
    return out


class Decoded(NamedTuple):
    """The spans of one request, grouped by trace: (summary, is the trace's root) per span."""

    traces: dict[bytes, list[tuple[SpanSummary, bool]]]  # bool: a root (see `summaries`)
    spans: int  # all spans in the request
    rejected: int  # spans with invalid ids: neither derived nor forwarded
    looped: int = 0  # spans this instance forwarded before (a loop): neither derived nor forwarded


def summaries(request: ExportTraceServiceRequest, instance: str | None = None) -> Decoded:
    """Every valid span of a request as a `SpanSummary` (through `spanmap.summarize`); spans whose
    resource says `instance` forwarded them already are counted `looped` and left out."""
    traces: dict[bytes, list[tuple[SpanSummary, bool]]] = {}
    total = rejected = looped = 0
    for rs in request.resource_spans:
        if instance is not None and instance in via(rs.resource):
            n = sum(len(ss.spans) for ss in rs.scope_spans)
            total += n
            looped += n
            continue
        for ss in rs.scope_spans:
            scope = ss.scope.name or None
            for span in ss.spans:
                total += 1
                tid, sid, pid = span.trace_id, span.span_id, span.parent_span_id
                if not _valid(tid, sid, pid):
                    rejected += 1
                    continue
                events = [(e.name, attributes(e.attributes)) for e in span.events] if span.events else []
                status = span.status
                summary = summarize(
                    int.from_bytes(sid, "big"),
                    int.from_bytes(pid, "big") if pid else None,
                    span.name,
                    attributes(span.attributes),
                    scope,
                    status.code == STATUS_CODE_ERROR,
                    status.message or None,
                    events,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                )
                # A root: no parent, or a parent in another process (this sender's part of the trace).
                root = not pid or span.flags & REMOTE_PARENT == REMOTE_PARENT
                traces.setdefault(tid, []).append((summary, root))
    return Decoded(traces, total, rejected, looped)


def via(resource: Resource) -> tuple[str, ...]:
    """The ingest instances that forwarded spans of this resource (the `VIA` attribute)."""
    for kv in resource.attributes:
        if kv.key == VIA:
            v = value(kv.value)
            return v if isinstance(v, tuple) else (str(v),)
    return ()


def for_next_hop(request: ExportTraceServiceRequest, instance: str) -> ExportTraceServiceRequest:
    """The request as it is forwarded (changed in place): spans with invalid ids taken out (the
    next hop would refuse the whole batch), resources `instance` forwarded before (a loop) taken
    out, and `instance` added to each resource's `VIA` attribute."""
    all_rs = request.resource_spans
    for i in reversed(range(len(all_rs))):
        rs = all_rs[i]
        seen = via(rs.resource)
        if instance in seen:
            del all_rs[i]
            continue
        for ss in rs.scope_spans:
            if not all(_valid(s.trace_id, s.span_id, s.parent_span_id) for s in ss.spans):
                keep = [s for s in ss.spans if _valid(s.trace_id, s.span_id, s.parent_span_id)]
                del ss.spans[:]
                ss.spans.extend(keep)
        attrs = rs.resource.attributes
        for j in reversed(range(len(attrs))):
            if attrs[j].key == VIA:
                del attrs[j]
        marker = attrs.add(key=VIA)
        marker.value.array_value.values.extend(AnyValue(string_value=str(x)) for x in (*seen, instance))
    return request


def _valid(tid: bytes, sid: bytes, pid: bytes) -> bool:
    return len(tid) == 16 and len(sid) == 8 and len(pid) in (0, 8) and any(tid) and any(sid)
