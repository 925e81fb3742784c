"""Acceptance 4: traces checked on the wire.

The library's own OTLP exporter sends to the harness's OtlpReceiver (a local HTTP server that
decodes the protobuf with opentelemetry-proto); the tests rebuild the span tree from what
arrived and check it against the telemetry contract: one execution span, its steps in order,
tool calls under them, attributes and events, ERROR status on failure, and an execution resumed
in another process continuing the same trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

import exporter
from exporter import semconv as sc
from exporter.testing import fresh_registry
from tests.servers import OtlpReceiver, ReceivedSpan, decode_spans, wait_until

REPO = Path(__file__).resolve().parents[1]
SPAN_KIND_INTERNAL = 1  # OTLP's Span.SpanKind.SPAN_KIND_INTERNAL
STATUS_ERROR = 2


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test configures the library itself and leaves it unconfigured."""
    exporter.reset()
    yield
    exporter.reset()


def _configure(endpoint: str, **kwargs: Any) -> None:
    exporter.configure(
        service_name="traces-wire-test",
        metrics_port=None,
        otlp_endpoint=endpoint,
        registry=fresh_registry(),
        set_global_tracer_provider=False,
        log_level="warning",
        **kwargs,
    )


@pytest.fixture
def wired(otlp_receiver: OtlpReceiver) -> Iterator[OtlpReceiver]:
    """The library exporting to the receiver; the endpoint is given without /v1/traces."""
    _configure(otlp_receiver.url)
    yield otlp_receiver
    assert otlp_receiver.bad_requests == []


def _flush() -> None:
    exporter.shutdown(timeout=5)


def _by_task(spans: list[ReceivedSpan], task_id: str) -> list[ReceivedSpan]:
    """The execution span(s) of one task."""
    return [s for s in spans if s.attributes.get(sc.ATTR_TASK_ID) == task_id]


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id),
        key=lambda s: s.start_ns,
    )


def _event(span: ReceivedSpan, name: str) -> list[dict[str, Any]]:
    return [e.attributes for e in span.events if e.name == name]


def test_completed_execution_tree_and_attributes_on_the_wire(wired: OtlpReceiver) -> None:
    """One execution span, steps in index order, tool-call grandchildren, contract attributes and events."""
    with exporter.execution("invoice", trigger="email", task_id="T-100", description="Invoice from ACME") as run:
        with run.step("Extract", tool="custom_gpt") as step:
            with step.tool_call("custom_gpt"):
                pass
            step.record_input({"subject": "Invoice 42", "api_key": "sk-secret"})
            step.record_output({"total": 1234.5})
            step.record_usage(input_tokens=120, output_tokens=30)
            step.evaluate("accuracy", score=0.97, explanation="fields match the PDF")
            step.evaluate("completeness", score=0.81, explanation="missing VAT id")
        with run.step("Route") as step:
            step.branch(
                selected="approve", not_selected=["reject", "escalate"], condition="total < 5000", reason="small"
            )
        with run.step("Notify", tool="gmail") as step:
            try:
                with step.tool_call("gmail", call_id="call-A"):
                    raise ConnectionError("smtp down")
            except ConnectionError:
                pass
            with step.tool_call("gmail", call_id="call-B"):
                pass
            step.record_usage(input_tokens=5, output_tokens=7)
    trace_id = run.trace_id
    _flush()
    spans = wired.wait_for_spans(lambda got: len([s for s in got if s.trace_id == trace_id]) >= 7)
    mine = [s for s in spans if s.trace_id == trace_id]
    assert len(mine) == 7, [s.name for s in mine]

    roots = [s for s in mine if s.parent_span_id is None]
    assert len(roots) == 1, [s.name for s in roots]
    root = roots[0]
    assert root.name == "invoke_workflow invoice" and root.kind == SPAN_KIND_INTERNAL
    assert root.resource_attributes.get("service.name") == "traces-wire-test"
    a = root.attributes
    assert a[sc.ATTR_GEN_AI_OPERATION_NAME] == sc.OPERATION_INVOKE_WORKFLOW
    assert a[sc.ATTR_GEN_AI_WORKFLOW_NAME] == "invoice" and a[sc.ATTR_GEN_AI_AGENT_NAME] == "invoice"
    assert a[sc.ATTR_TASK_ID] == "T-100" and a[sc.ATTR_TASK_TRIGGER] == "email"
    assert a[sc.ATTR_TASK_STATUS] == "completed" and sc.ATTR_TASK_FAILURE_CAUSE not in a
    assert a[sc.ATTR_TASK_DESCRIPTION] == "Invoice from ACME"
    assert a[sc.ATTR_TASK_EVALUATION_SCORE] == pytest.approx((0.97 + 0.81) / 2)
    assert a[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 125 and a[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 37
    assert root.status_code != STATUS_ERROR

    steps = _children(mine, root)
    assert [s.name for s in steps] == ["Extract", "Route", "Notify"]
    assert [s.attributes[sc.ATTR_STEP_INDEX] for s in steps] == [1, 2, 3]
    assert [s.attributes[sc.ATTR_STEP_NAME] for s in steps] == ["Extract", "Route", "Notify"]
    extract, route, notify = steps
    assert extract.attributes[sc.ATTR_GEN_AI_TOOL_NAME] == "custom_gpt"
    assert sc.ATTR_GEN_AI_TOOL_NAME not in route.attributes
    # 0.81 is under the default min_evaluation_score (0.90): that evaluation fails, so the step does
    assert extract.attributes[sc.ATTR_STEP_STATUS] == "failed"
    assert route.attributes[sc.ATTR_STEP_STATUS] == "passed" and notify.attributes[sc.ATTR_STEP_STATUS] == "passed"
    assert extract.attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert extract.attributes[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    captured_in = json.loads(extract.attributes[sc.ATTR_STEP_INPUT])
    assert captured_in["subject"] == "Invoice 42" and captured_in["api_key"] != "sk-secret"
    assert json.loads(extract.attributes[sc.ATTR_STEP_OUTPUT]) == {"total": 1234.5}

    evaluations = _event(extract, sc.EVENT_EVALUATION)
    assert evaluations == [
        {
            sc.ATTR_EVALUATION_NAME: "accuracy",
            sc.ATTR_EVALUATION_SCORE_VALUE: 0.97,
            sc.ATTR_EVALUATION_SCORE_LABEL: "pass",
            sc.ATTR_EVALUATION_EXPLANATION: "fields match the PDF",
        },
        {
            sc.ATTR_EVALUATION_NAME: "completeness",
            sc.ATTR_EVALUATION_SCORE_VALUE: 0.81,
            sc.ATTR_EVALUATION_SCORE_LABEL: "fail",
            sc.ATTR_EVALUATION_EXPLANATION: "missing VAT id",
        },
    ]
    assert _event(route, sc.EVENT_BRANCH_DECISION) == [
        {
            sc.ATTR_BRANCH_SELECTED: "approve",
            sc.ATTR_BRANCH_NOT_SELECTED: ["reject", "escalate"],
            sc.ATTR_BRANCH_CONDITION: "total < 5000",
            sc.ATTR_BRANCH_REASON: "small",
        }
    ]

    (gpt_call,) = _children(mine, extract)
    assert _children(mine, route) == []
    failed_call, ok_call = _children(mine, notify)
    for call, tool in ((gpt_call, "custom_gpt"), (failed_call, "gmail"), (ok_call, "gmail")):
        assert call.name == f"execute_tool {tool}" and call.kind == SPAN_KIND_INTERNAL
        assert call.attributes[sc.ATTR_GEN_AI_OPERATION_NAME] == sc.OPERATION_EXECUTE_TOOL
        assert call.attributes[sc.ATTR_GEN_AI_TOOL_NAME] == tool
        assert call.attributes[sc.ATTR_GEN_AI_TOOL_CALL_ID]
    assert failed_call.attributes[sc.ATTR_GEN_AI_TOOL_CALL_ID] == "call-A"
    assert ok_call.attributes[sc.ATTR_GEN_AI_TOOL_CALL_ID] == "call-B"
    assert failed_call.attributes[sc.ATTR_ERROR_TYPE] == "ConnectionError"
    assert failed_call.status_code == STATUS_ERROR and "smtp down" in failed_call.status_message
    assert sc.ATTR_ERROR_TYPE not in ok_call.attributes and ok_call.status_code != STATUS_ERROR
    # every span of the trace is one of these seven: no stray spans
    assert {s.span_id for s in mine} == {root.span_id, *(s.span_id for s in steps), gpt_call.span_id,
                                         failed_call.span_id, ok_call.span_id}  # fmt: skip


def test_failed_executions_have_error_status_cause_and_message(wired: OtlpReceiver) -> None:
    """A failure sets ERROR status with the message, task.status failed and task.failure.cause."""
    with pytest.raises(exporter.ValidationFailure):
        with exporter.execution("invoice", trigger="webhook", task_id="F-validation") as run:
            with run.step("Validate"):
                pass
            raise exporter.ValidationFailure("total does not match line items")
    with pytest.raises(exporter.ToolError):
        with exporter.execution("invoice", trigger="api", task_id="F-tool") as run:
            with run.step("Post", tool="salesforce") as step:
                with step.tool_call("salesforce"):
                    raise exporter.ToolError("salesforce answered 503")
    with exporter.execution("support", trigger="manual", task_id="F-missing") as run:
        run.fail("missing_data", "customer record not found")
    _flush()
    spans = wired.wait_for_spans(lambda got: all(_by_task(got, t) for t in ("F-validation", "F-tool", "F-missing")))

    cases = {
        "F-validation": ("validation_failure", "total does not match line items", "ValidationFailure"),
        "F-tool": ("tool_error", "salesforce answered 503", "ToolError"),
        "F-missing": ("missing_data", "customer record not found", None),
    }
    for task_id, (cause, message, error_type) in cases.items():
        (root,) = _by_task(spans, task_id)
        assert root.status_code == STATUS_ERROR, task_id
        assert message in root.status_message, (task_id, root.status_message)
        assert root.attributes[sc.ATTR_TASK_STATUS] == "failed"
        assert root.attributes[sc.ATTR_TASK_FAILURE_CAUSE] == cause
        if error_type:
            assert root.attributes[sc.ATTR_ERROR_TYPE] == error_type
            assert any(e.name == "exception" for e in root.events), task_id

    (tool_root,) = _by_task(spans, "F-tool")
    (post,) = _children(spans, tool_root)
    assert post.attributes[sc.ATTR_STEP_STATUS] == "failed" and post.status_code == STATUS_ERROR
    (call,) = _children(spans, post)
    assert call.name == "execute_tool salesforce"
    assert call.attributes[sc.ATTR_ERROR_TYPE] == "ToolError" and call.status_code == STATUS_ERROR
    assert "salesforce answered 503" in call.status_message


def test_queued_execution_has_pending_and_resumed_events(wired: OtlpReceiver) -> None:
    """An execution that starts queued carries a `pending` event, then a `resumed` one when it runs."""
    with exporter.execution("triage", trigger="timer", task_id="Q-1", pending="queued") as run:
        with run.step("Classify"):
            pass
    _flush()
    spans = wired.wait_for_spans(lambda got: _by_task(got, "Q-1"))
    (root,) = _by_task(spans, "Q-1")
    assert [e.name for e in root.events] == [sc.EVENT_PENDING, sc.EVENT_RESUMED]
    assert _event(root, sc.EVENT_PENDING) == [{sc.ATTR_PENDING_REASON: "queued"}]
    assert _event(root, sc.EVENT_RESUMED)[0][sc.ATTR_PENDING_SECONDS] >= 0
    assert root.attributes[sc.ATTR_TASK_STATUS] == "completed"


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import exporter
    carrier = json.loads(sys.stdin.read())
    exporter.configure(service_name="approver", metrics_port=None, otlp_endpoint=sys.argv[1],
                       set_global_tracer_provider=False, log_level="off")
    with exporter.resume_execution(carrier) as run:
        with run.step("Post", tool="salesforce") as step:
            with step.tool_call("salesforce"):
                pass
            step.record_usage(input_tokens=3, output_tokens=4)
    print(json.dumps({"trace_id": run.trace_id, "span_id": run.span_id}))
    exporter.shutdown(timeout=5)
    """
)


def test_resumed_execution_continues_the_trace_in_another_process(wired: OtlpReceiver) -> None:
    """suspend() here, resume_execution() in a second process: same trace, pending/resumed events."""
    with exporter.execution("invoice", trigger="email", task_id="A-7", description="needs approval") as run:
        with run.step("Extract", tool="custom_gpt") as step:
            step.record_usage(input_tokens=10, output_tokens=20)
            step.evaluate("accuracy", score=0.96)
        carrier_text = json.dumps(run.suspend("approval"))
    first_trace, first_span = run.trace_id, run.span_id
    _flush()

    child = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, wired.url],
        input=carrier_text,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    second = json.loads(child.stdout.strip().splitlines()[-1])
    assert second["trace_id"] == first_trace

    spans = wired.wait_for_spans(lambda got: len(_by_task(got, "A-7")) == 2)
    parts = sorted(_by_task(spans, "A-7"), key=lambda s: s.start_ns)
    first, resumed = parts
    assert {s.trace_id for s in parts} == {first_trace}
    assert first.span_id == first_span and resumed.span_id == second["span_id"]
    assert resumed.parent_span_id == first.span_id  # the resumed part hangs under the first
    assert first.resource_attributes["service.name"] == "traces-wire-test"
    assert resumed.resource_attributes["service.name"] == "approver"

    assert first.attributes[sc.ATTR_TASK_STATUS] == "pending"
    assert _event(first, sc.EVENT_PENDING) == [{sc.ATTR_PENDING_REASON: "approval"}]
    (resumed_event,) = _event(resumed, sc.EVENT_RESUMED)
    assert resumed_event[sc.ATTR_PENDING_REASON] == "approval" and resumed_event[sc.ATTR_PENDING_SECONDS] >= 0
    assert resumed.name == "invoke_workflow invoice"
    assert resumed.attributes[sc.ATTR_TASK_STATUS] == "completed"
    assert resumed.attributes[sc.ATTR_TASK_DESCRIPTION] == "needs approval"
    assert resumed.attributes[sc.ATTR_TASK_TRIGGER] == "email"
    # counts carried over in the carrier: tokens and the score of the first part
    assert resumed.attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 13
    assert resumed.attributes[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] == 24
    assert resumed.attributes[sc.ATTR_TASK_EVALUATION_SCORE] == pytest.approx(0.96)

    step1, resumed_again = _children(spans, first)  # its step, and the resumed part
    assert resumed_again == resumed
    (step2,) = _children(spans, resumed)
    assert (step1.name, step1.attributes[sc.ATTR_STEP_INDEX]) == ("Extract", 1)
    assert (step2.name, step2.attributes[sc.ATTR_STEP_INDEX]) == ("Post", 2)
    (call,) = _children(spans, step2)
    assert call.name == "execute_tool salesforce" and call.trace_id == first_trace


# ------------------------------------------------------------------ gRPC


class _GrpcTraceSink:
    """A minimal OTLP/gRPC trace service on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        sink = self
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - generated name
                with sink._lock:
                    sink.spans.extend(decode_spans(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


def test_grpc_is_used_when_the_protocol_variable_says_so(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends spans over OTLP/gRPC, not HTTP."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    sink = _GrpcTraceSink()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        _configure(f"http://127.0.0.1:{sink.port}")
        with exporter.execution("support", trigger="api", task_id="G-1") as run:
            with run.step("Answer"):
                pass
        _flush()
        got = wait_until(lambda: len(sink.received()) >= 2 and sink.received(), timeout=10)
        assert {s.name for s in got} == {"invoke_workflow support", "Answer"}
        assert {s.trace_id for s in got} == {run.trace_id}
        assert otlp_receiver.spans() == []  # nothing went the HTTP way
    finally:
        sink.server.stop(grace=None)
