"""The span bridge over time: attaching late, warning when unreachable, expiring, late spans."""

from __future__ import annotations

import threading

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from exporter import semconv as sc
from exporter import testing
from exporter.spans import bridge as bridge_mod
from exporter.spans.bridge import SpanBridge, install
from exporter.traces.export import setup_tracing

OP = sc.ATTR_GEN_AI_OPERATION_NAME
IN = sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS


@pytest.fixture
def fresh_globals(monkeypatch):
    """No global TracerProvider, and OTel willing to set one again (it sets one once per process)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup():
    """What configure() builds with no provider and no exporter given: the library's private provider."""
    return setup_tracing(
        service_name="t", enabled=True, tracer_provider=None, otlp_endpoint=None, span_exporter=None,
        export_timeout=1.0, shutdown_timeout=1.0, set_global=False, on_drop=lambda *a: None,
        on_warn=lambda m: None, version="0",
    )  # fmt: skip


def _run(tp, agent: str = "weather") -> None:
    """A framework run: invoke_agent > chat (50 input tokens)."""
    tracer = tp.get_tracer("some.framework")
    with tracer.start_as_current_span(f"invoke_agent {agent}", attributes={OP: "invoke_agent"}) as root:
        root.set_attribute(sc.ATTR_GEN_AI_AGENT_NAME, agent)
        with tracer.start_as_current_span("chat m", attributes={OP: "chat", IN: 50}):
            pass


def _dropped(cap, reason: str) -> float:
    return cap.value("agent_exporter_dropped_total", reason=reason) or 0.0


def test_app_provider_set_after_install_is_attached_by_tick(fresh_globals):
    """(a) A global SDK provider set after install is followed from the next tick(), with no library span."""
    with testing.capture(log_level="off") as cap:
        bridge = install(_setup(), cap.state.recorder, cap.state.recorder.drop, exemplars=False)
        app = TracerProvider()
        trace.set_tracer_provider(app)
        bridge.tick()
        _run(app)
        assert cap.total("agent_executions_finished_total") == 1
        bridge.tick()  # the same provider again: not added twice
        _run(app)
        assert cap.total("agent_executions_finished_total") == 2


def test_no_sdk_provider_warns_once_naming_the_fix(fresh_globals):
    """(b) No SDK provider a framework would use, past the grace period: one warning that names the fixes."""
    clock = _Clock()
    warned: list[tuple[str, str]] = []
    with testing.capture(log_level="off") as cap:
        bridge = install(
            _setup(), cap.state.recorder, cap.state.recorder.drop, exemplars=False,
            warn=lambda k, m: warned.append((k, m)), provider_grace=5.0, clock=clock,
        )  # fmt: skip
        clock.now += 4.0
        bridge.tick()
        assert warned == []
        clock.now += 2.0
        bridge.tick()
        bridge.tick(clock.now + 60)
    assert len(warned) == 1
    message = warned[0][1]
    for fix in ("set_global_tracer_provider=True", "set_tracer_provider(", "configure(tracer_provider=tp)"):
        assert fix in message


def test_no_warning_when_a_provider_frameworks_use_has_the_bridge(fresh_globals):
    """(b) Given tracer_provider=, or a global SDK provider set late: no warning."""
    clock = _Clock()
    warned: list[str] = []
    with testing.capture(tracer_provider=TracerProvider(), log_level="off") as cap:
        install(cap.state.tracing, cap.state.recorder, cap.state.recorder.drop, exemplars=False,
                warn=lambda k, m: warned.append(m), clock=clock).tick(clock.now + 10)  # fmt: skip
        late = install(_setup(), cap.state.recorder, cap.state.recorder.drop, exemplars=False,
                       warn=lambda k, m: warned.append(m), clock=clock)  # fmt: skip
        trace.set_tracer_provider(TracerProvider())
        late.tick(clock.now + 10)
    assert warned == []


def test_never_ended_roots_expire_and_stop_starving_new_traces():
    """(c) 10,001 runs whose root never ends: counted as trace_expired after the timeout; new runs count again."""
    clock = _Clock()
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp, log_level="off") as cap:
        bridge = SpanBridge(cap.state.recorder, cap.state.recorder.drop, trace_timeout=300.0, clock=clock)
        tp.add_span_processor(bridge)
        tracer = tp.get_tracer("smolagents")
        for _ in range(10_001):  # smolagents' instrumentor when run() raises: the root is never ended
            root = tracer.start_span("agent.run", attributes={"openinference.span.kind": "AGENT"})
            tracer.start_span("Step 1", context=trace.set_span_in_context(root)).end()
        assert _dropped(cap, "trace_over_budget") >= 1  # the 10,001st: over the open-trace budget
        _run(tp)
        assert cap.total("agent_executions_finished_total") == 0  # starved
        bridge.tick(clock.now + 299.0)
        assert _dropped(cap, "trace_expired") == 0
        bridge.tick(clock.now + 301.0)
        assert _dropped(cap, "trace_expired") == 10_000 + 10_001  # held Step spans + open roots
        assert bridge._traces == {} and bridge._open == {} and bridge._started == {}
        _run(tp)
        assert cap.total("agent_executions_finished_total") == 1
        assert cap.total("agent_executions_started_total") == 1  # nothing assembled from the expired


def test_a_busy_long_run_is_not_expired():
    """(c) A run older than the timeout whose spans keep ending is held, then counted whole."""
    clock = _Clock()
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp, log_level="off") as cap:
        bridge = SpanBridge(cap.state.recorder, cap.state.recorder.drop, trace_timeout=10.0, clock=clock)
        tp.add_span_processor(bridge)
        tracer = tp.get_tracer("f")
        with tracer.start_as_current_span("invoke_agent a", attributes={OP: "invoke_agent"}):
            for i in range(1, 6):
                with tracer.start_as_current_span("chat m", attributes={OP: "chat", IN: 50}):
                    pass
                bridge.tick(clock.now + 6.0 * i)
        assert _dropped(cap, "trace_expired") == 0
        assert cap.value("agent_tokens_total", agent="a", step="chat m", type="input") == 250


def test_a_span_ending_after_its_expired_trace_is_late_not_a_new_execution():
    """(c) The never-ended root that finally ends after expiry: late_span, no execution of its own."""
    clock = _Clock()
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp, log_level="off") as cap:
        bridge = SpanBridge(cap.state.recorder, cap.state.recorder.drop, trace_timeout=10.0, clock=clock)
        tp.add_span_processor(bridge)
        tracer = tp.get_tracer("f")
        root = tracer.start_span("invoke_agent a", attributes={OP: "invoke_agent"})
        tracer.start_span("chat m", context=trace.set_span_in_context(root), attributes={OP: "chat"}).end()
        bridge.tick(clock.now + 11.0)
        root.end()
        assert _dropped(cap, "trace_expired") == 2 and _dropped(cap, "late_span") == 1
        assert cap.total("agent_executions_started_total") == 0


def test_child_ending_after_its_root_is_counted_late_not_a_bogus_execution():
    """(d) A child (another thread) that ends after its root was assembled: one execution and late_span, not two."""
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp, span_metrics=True, log_level="off") as cap:
        tracer = tp.get_tracer("f")
        root = tracer.start_span("invoke_agent outer", attributes={OP: "invoke_agent"})
        child = tracer.start_span("invoke_agent inner", context=trace.set_span_in_context(root),
                                  attributes={OP: "invoke_agent"})  # fmt: skip
        root.end()
        t = threading.Thread(target=child.end)
        t.start()
        t.join()
        assert cap.total("agent_executions_started_total") == 1
        assert _dropped(cap, "late_span") == 1


def test_child_racing_its_roots_assembly_is_never_lost(monkeypatch):
    """(d) A child whose end is read while its root is assembled: in the execution or counted late, never lost."""
    tp = TracerProvider()
    summarize = bridge_mod._summary
    reading, root_done = threading.Event(), threading.Event()

    def slow_summary(span, *args):
        out = summarize(span, *args)
        if span.name == "chat late":  # the child, between reading its trace and appending to it
            reading.set()
            root_done.wait(2.0)
        return out

    monkeypatch.setattr(bridge_mod, "_summary", slow_summary)
    with testing.capture(tracer_provider=tp, span_metrics=True, log_level="off") as cap:
        tracer = tp.get_tracer("f")
        root = tracer.start_span("invoke_agent a", attributes={OP: "invoke_agent"})
        ctx = trace.set_span_in_context(root)
        tracer.start_span("chat m", context=ctx, attributes={OP: "chat", IN: 50}).end()  # the trace is held
        late = tracer.start_span("chat late", context=ctx, attributes={OP: "chat", IN: 7})
        t = threading.Thread(target=late.end)
        t.start()
        assert reading.wait(2.0)
        root.end()  # assembled while the child's end is half done
        root_done.set()
        t.join()
        tokens = cap.value("agent_tokens_total", agent="a", step="chat late", type="input") or 0
        assert tokens == 7 or _dropped(cap, "late_span") == 1
        assert cap.total("agent_executions_started_total") == 1


def test_late_spans_in_a_resumed_trace_are_not_mistaken():
    """A second local root in an assembled trace (resume, remote parent) is a new run, not late spans."""
    tp = TracerProvider()
    with testing.capture(tracer_provider=tp, span_metrics=True, log_level="off") as cap:
        tracer = tp.get_tracer("f")
        first = tracer.start_span("invoke_agent a", attributes={OP: "invoke_agent"})
        remote = trace.NonRecordingSpan(
            trace.SpanContext(
                first.get_span_context().trace_id, 0x1234, True, trace.TraceFlags(trace.TraceFlags.SAMPLED)
            )
        )
        first.end()
        with (
            tracer.start_as_current_span(
                "invoke_agent a", context=trace.set_span_in_context(remote), attributes={OP: "invoke_agent"}
            ),
            tracer.start_as_current_span("chat m", attributes={OP: "chat", IN: 50}),
        ):
            pass
        assert cap.total("agent_executions_started_total") == 2
        assert _dropped(cap, "late_span") == 0


def test_housekeeping_never_raises():
    """A failure inside tick() is counted as internal_error, not raised into the runtime's thread."""
    with testing.capture(tracer_provider=TracerProvider(), span_metrics=True, log_level="off") as cap:
        bridge = cap.state.bridge
        held = bridge._traces
        bridge._traces = None  # type: ignore[assignment]
        try:
            bridge.tick()
        finally:
            bridge._traces = held
        assert _dropped(cap, "internal_error") == 1


def test_bad_timeouts_are_refused_at_set_up():
    """trace_timeout <= 0 is a ValueError when the bridge is built."""
    with pytest.raises(ValueError, match="trace_timeout"):
        SpanBridge(object(), lambda *a: None, trace_timeout=0)  # type: ignore[arg-type]
