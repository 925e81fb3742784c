"""OTLP request builders for the ingest tests and the benchmark: agent executions as an SDK in
another language would send them (GenAI semantic conventions, `task.*` attributes)."""

from __future__ import annotations

import base64
import gzip
import http.client
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

_ids = itertools.count(1)
T0 = 1_700_000_000_000_000_000


def new_trace_id() -> bytes:
    return os.urandom(8) + next(_ids).to_bytes(8, "big")


def new_span_id() -> bytes:
    return next(_ids).to_bytes(8, "big")


def _any(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def kvs(attrs: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in attrs.items()]


def span(
    trace_id: bytes,
    name: str,
    attrs: Mapping[str, Any],
    *,
    parent: bytes = b"",
    span_id: bytes | None = None,
    error: str | None = None,
    events: Sequence[tuple[str, Mapping[str, Any]]] = (),
    start: int = T0,
    seconds: float = 1.0,
) -> Span:
    s = Span(
        trace_id=trace_id,
        span_id=span_id or new_span_id(),
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(seconds * 1e9),
        attributes=kvs(attrs),
    )
    for ename, eattrs in events:
        s.events.add(name=ename, time_unix_nano=start, attributes=kvs(eattrs))
    if error is not None:
        s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return s


def request(spans: Iterable[Span], scope: str = "my-node-agent") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": "node-agent"}))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    ss.spans.extend(spans)
    return req


def execution(
    agent: str = "billing",
    *,
    trigger: str = "webhook",
    task_id: str | None = "task-1",
    steps: int = 2,
    tool: str | None = "lookup",
    tool_error: bool = False,
    fail: str | None = None,
    evaluation: tuple[str, float, str] | None = None,
    trace_id: bytes | None = None,
) -> list[Span]:
    """One execution: an `invoke_agent` root, `steps` chat spans (10 in / 5 out tokens each),
    each followed by a tool call (a sibling, as Pydantic AI nests them); optionally a failing
    tool (and so a failed run), a failure of the run itself (`fail`: the exception type), an
    evaluation event on the root."""
    tid = trace_id or new_trace_id()
    root_id = new_span_id()
    out: list[Span] = []
    for i in range(steps):
        chat = new_span_id()
        out.append(span(tid, f"chat step{i}", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10,
                                                "gen_ai.usage.output_tokens": 5}, parent=root_id, span_id=chat,
                        start=T0 + i * 10**8, seconds=0.05))  # fmt: skip
        if tool:
            failing = tool_error and i == steps - 1
            out.append(span(tid, f"execute_tool {tool}", {"gen_ai.operation.name": "execute_tool",
                                                          "gen_ai.tool.name": tool}, parent=root_id,
                            error="lookup failed" if failing else None, seconds=0.01))  # fmt: skip
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": agent,
        "task.trigger": trigger,
    }
    if task_id is not None:
        attrs["task.id"] = task_id
    events: list[tuple[str, Mapping[str, Any]]] = []
    if evaluation is not None:
        name, score, label = evaluation
        events.append(("gen_ai.evaluation.result", {"gen_ai.evaluation.name": name,
                                                    "gen_ai.evaluation.score.value": score,
                                                    "gen_ai.evaluation.score.label": label}))  # fmt: skip
    if fail is not None:
        events.append(("exception", {"exception.type": fail, "exception.message": "it broke"}))
    failed = fail is not None or tool_error
    out.append(span(tid, f"invoke_agent {agent}", attrs, span_id=root_id, error="it broke" if failed else None,
                    events=events, seconds=2.0))  # fmt: skip
    return out


def to_json(req: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: protobuf's JSON mapping with ids as hex (the OTLP spec's one difference)."""
    data = json_format.MessageToDict(req)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if s.get(key):
                        s[key] = base64.b64decode(s[key]).hex()
    return json.dumps(data).encode()


def post(
    port: int,
    body: bytes,
    *,
    content_type: str = "application/x-protobuf",
    headers: Mapping[str, str] | None = None,
    gzipped: bool = False,
    chunked: bool = False,
    path: str = "/v1/traces",
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One POST with http.client: (status, headers, body)."""
    h = {"Content-Type": content_type, **(headers or {})}
    if gzipped:
        body = gzip.compress(body)
        h["Content-Encoding"] = "gzip"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            h["Transfer-Encoding"] = "chunked"
            conn.putrequest("POST", path)
            for k, v in h.items():
                conn.putheader(k, v)
            conn.endheaders()
            for i in range(0, len(body), 1000):
                piece = body[i : i + 1000]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request("POST", path, body, h)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
