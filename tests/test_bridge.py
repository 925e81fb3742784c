"""The span bridge in process: other instrumentations' spans become the library's metrics."""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode
from structlog.testing import capture_logs

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.spans.bridge import SpanBridge

OP = sc.ATTR_GEN_AI_OPERATION_NAME


def _agent_run(tp: TracerProvider, *, fail_tool: bool = False, scope: str = "some.framework") -> None:
    """What a GenAI-instrumented framework emits for one run: agent > chat, tool, chat."""
    tracer = tp.get_tracer(scope)
    with tracer.start_as_current_span("invoke_agent weather", attributes={OP: "invoke_agent"}) as root:
        root.set_attribute(sc.ATTR_GEN_AI_AGENT_NAME, "weather")
        with tracer.start_as_current_span("chat m", attributes={OP: "chat"}) as chat:
            chat.set_attributes({sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: 50, sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: 10})
        with tracer.start_as_current_span("execute_tool lookup", attributes={OP: "execute_tool"}) as tool:
            tool.set_attribute(sc.ATTR_GEN_AI_TOOL_NAME, "lookup")
            if fail_tool:
                tool.set_status(Status(StatusCode.ERROR, "down"))
        with tracer.start_as_current_span("chat m", attributes={OP: "chat"}) as chat:
            chat.set_attributes({sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: 80, sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: 20})
        if fail_tool:
            root.set_status(Status(StatusCode.ERROR, "RuntimeError: down"))


def test_framework_spans_become_execution_step_tool_and_token_metrics():
    """span_metrics=True: a framework run is one execution, two steps, one tool call, its tokens."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        _agent_run(tp)
        _agent_run(tp, fail_tool=True)
        v = cap.value
        assert v("agent_executions_started_total", agent="weather", trigger="unknown") == 2
        assert v("agent_executions_finished_total", agent="weather", trigger="unknown", status="completed") == 1
        assert v("agent_execution_failures_total", agent="weather", trigger="unknown", cause="tool_error") == 1
        assert v("agent_steps_total", agent="weather", step="chat m", status="passed") == 4
        assert v("agent_tool_calls_total", agent="weather", tool="lookup", outcome="success") == 1
        assert v("agent_tool_calls_total", agent="weather", tool="lookup", outcome="error") == 1
        assert v("agent_tokens_total", agent="weather", step="chat m", type="input") == 260
        assert v("agent_tokens_total", agent="weather", step="chat m", type="output") == 60


def test_without_span_metrics_nothing_is_derived():
    """The default (span_metrics=False) adds no processor: framework spans change no metric."""
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp) as cap:
        _agent_run(tp)
        assert cap.total("agent_executions_started_total") == 0
        assert cap.state.bridge is None


def test_framework_inside_a_native_execution_is_not_counted_twice():
    """A framework run inside exporter.execution() fills its steps, tools and tokens; one execution."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        with exporter.execution("invoice", trigger="email") as run, run.step("Extract"):
            _agent_run(tp)
        v = cap.value
        assert cap.total("agent_executions_started_total") == 1
        assert v("agent_executions_finished_total", agent="invoice", trigger="email", status="completed") == 1
        assert cap.total("agent_steps_total") == 1  # the native step only
        assert v("agent_tool_calls_total", agent="invoice", tool="lookup", outcome="success") == 1
        assert v("agent_tokens_total", agent="invoice", step="Extract", type="input") == 130


def test_native_execution_on_another_provider_still_absorbs_framework_spans():
    """With the library exporting elsewhere, the context still ties framework spans to the execution."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        bridge_only = TracerProvider()
        bridge_only.add_span_processor(cap.state.bridge)
        with exporter.execution("invoice", trigger="email") as run, run.step("Extract"):
            _agent_run(bridge_only)
        assert cap.total("agent_executions_started_total") == 1
        assert cap.value("agent_tokens_total", agent="invoice", step="Extract", type="output") == 30


def test_task_helper_names_trigger_and_task_id():
    """exporter.task(trigger=, task_id=) around a framework run sets its trigger and task id."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, log_level="info") as cap, capture_logs() as logs:
        with exporter.task(trigger="webhook", task_id="T-42"):
            _agent_run(tp)
        assert cap.value("agent_executions_started_total", agent="weather", trigger="webhook") == 1
    (line,) = [e for e in logs if e["event"] == sc.LOG_EXECUTION_FINISHED]
    assert (line["task_id"], line["trigger"], line["agent"]) == ("T-42", "webhook", "weather")


def test_own_spans_alone_cost_no_trace_state():
    """A trace with only the library's own spans leaves nothing held in the bridge."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        for _ in range(50):
            with exporter.execution("a") as run, run.step("s"):
                pass
        bridge = cap.state.bridge
        assert bridge._open == {} and bridge._traces == {} and bridge._started == {}
        assert cap.total("agent_executions_started_total") == 50


def test_budgets_drop_and_count_instead_of_growing():
    """Past the open-span and per-trace budgets spans are dropped and counted, not held."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        small = SpanBridge(cap.state.recorder, cap.state.recorder.drop, max_spans_per_trace=3, max_open_spans=5)
        other = TracerProvider()
        other.add_span_processor(small)
        tracer = other.get_tracer("f")
        with tracer.start_as_current_span("invoke_agent a", attributes={OP: "invoke_agent"}):
            for _ in range(10):
                with tracer.start_as_current_span("chat m", attributes={OP: "chat"}):
                    pass
        assert cap.value("agent_exporter_dropped_total", reason="trace_over_budget") >= 7
        assert small._open == {} and small._traces == {}


def test_a_broken_span_is_counted_not_raised():
    """A span object the bridge cannot read is counted as bad_span; the app sees nothing."""
    with testing.capture(span_metrics=True, tracer_provider=TracerProvider()) as cap:
        cap.state.bridge.on_end(object())  # type: ignore[arg-type]
        cap.state.bridge.on_start(object())
        assert cap.value("agent_exporter_dropped_total", reason="bad_span") == 2


def test_concurrent_framework_runs_are_counted_exactly():
    """Eight threads, 50 runs each: 400 executions, 400 tool calls, exact tokens."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp, log_level="off") as cap:
        threads = [threading.Thread(target=lambda: [_agent_run(tp) for _ in range(50)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        finished = cap.value("agent_executions_finished_total", agent="weather", trigger="unknown", status="completed")
        assert finished == 400
        assert cap.value("agent_tool_calls_total", agent="weather", tool="lookup", outcome="success") == 400
        assert cap.value("agent_tokens_total", agent="weather", step="chat m", type="input") == 400 * 130


def test_private_attribute_path_matches_the_public_one():
    """The bridge's fast read of a span's attributes (the SDK's private dict) equals span.attributes."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from exporter.spans.bridge import _attributes

    mem = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(mem))
    _agent_run(tp)
    for span in mem.get_finished_spans():
        fast = _attributes(span)
        assert isinstance(fast, dict) and fast == dict(span.attributes or {})


def _fresh_globals(monkeypatch) -> None:
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


def test_app_provider_set_first_gets_the_bridge(monkeypatch):
    """An application's global provider, set before configure(), gets the bridge (and keeps its exporters)."""
    from opentelemetry import trace

    _fresh_globals(monkeypatch)
    app = TracerProvider()
    trace.set_tracer_provider(app)
    registry = testing.fresh_registry()
    exporter.configure(metrics_port=None, registry=registry, span_metrics=True, log_level="off")
    _agent_run(app)
    assert testing.metric_total(registry, "agent_executions_finished_total") == 1


def test_no_app_provider_set_global_sends_framework_spans_through_the_bridge(monkeypatch):
    """With no tracing of the app's own, set_global_tracer_provider=True: frameworks on the global provider are seen."""
    from opentelemetry import trace

    _fresh_globals(monkeypatch)
    registry = testing.fresh_registry()
    exporter.configure(
        metrics_port=None, registry=registry, span_metrics=True, set_global_tracer_provider=True, log_level="off"
    )
    _agent_run(trace.get_tracer_provider())  # type: ignore[arg-type]
    assert testing.metric_total(registry, "agent_executions_finished_total") == 1


def test_reset_quiets_the_bridge_left_in_a_provider():
    """After reset() the bridge stays in the provider (the SDK cannot remove it) but records nothing."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        bridge = cap.state.bridge
    registry = cap.registry
    _agent_run(tp)
    assert bridge._stopped and testing.metric_total(registry, "agent_executions_started_total") == 0
