"""configure(): errors at set-up, the no-op default, reuse of the application's TracerProvider."""

from __future__ import annotations

import warnings

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import exporter
from exporter import testing


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metrics_port": -1},
        {"metrics_port": 70000},
        {"metrics_port": "9464"},
        {"service_name": ""},
        {"objectives": {"a": {"completion_ratio": 1.5}}},
        {"objectives": {"a": {"completion_rate": 0.9}}},
        {"objectives": {"a": {"max_runtime_seconds": 0}}},
        {"objectives": {"a": 0.9}},
        {"max_content_bytes": 10},
        {"review_threshold": 2},
        {"evaluation_fail_status": "broken"},
        {"log_level": "loud"},
        {"redact": "not callable"},
        {"otlp_endpoint": "localhost"},
        {"max_duration": -5},
        {"metrics_certfile": "cert.pem"},
    ],
)
def test_programmer_errors_raise_value_error_at_once(kwargs):
    """A bad argument to configure() is a ValueError, and leaves the library unconfigured."""
    kwargs.setdefault("metrics_port", None)
    with pytest.raises(ValueError):
        exporter.configure(**kwargs)
    assert exporter.registry() is None


def test_unconfigured_is_a_cheap_no_op():
    """Without configure(), the whole API works and records nothing."""
    with exporter.execution("a", trigger="email") as run:
        with run.step("s", tool="t") as s:
            with s.tool_call("t"):
                pass
            assert s.evaluate("x", score=0.5) is None
            s.record_usage(input_tokens=5)
            s.record_output({"a": 1})
            s.branch(selected="x")
        carrier = run.suspend("approval")
    assert carrier == {}
    with exporter.resume_execution(carrier):
        pass
    assert exporter.registry() is None


def test_unconfigured_execution_passes_exceptions_through():
    """The no-op path never swallows the agent's exceptions."""
    with pytest.raises(ZeroDivisionError), exporter.execution("a") as run, run.step("s"):
        1 / 0  # noqa: B018


def test_configuring_twice_warns_and_keeps_the_first():
    """A second configure() warns and changes nothing."""
    first = exporter.configure(metrics_port=None, service_name="one", set_global_tracer_provider=False)
    with pytest.warns(RuntimeWarning, match="called again"):
        second = exporter.configure(metrics_port=None, service_name="two", set_global_tracer_provider=False)
    assert second is first
    assert second.settings.service_name == "one"


def test_application_tracer_provider_is_reused_not_replaced():
    """Spans go to the provider the application set; configure() adds no exporter to it."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    state = exporter.configure(metrics_port=None, tracer_provider=provider)
    assert state.tracing.provider is provider
    assert state.tracing.processor is None
    with exporter.execution("a"):
        pass
    assert [s.name for s in spans.get_finished_spans()] == ["invoke_workflow a"]


def test_no_endpoint_means_no_export(monkeypatch):
    """With no endpoint in configure() nor OTEL_* variables, nothing is exported."""
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(var, raising=False)
    state = exporter.configure(metrics_port=None, set_global_tracer_provider=False)
    assert state.tracing.processor is None
    with exporter.execution("a") as run:
        assert run.trace_id is not None and len(run.trace_id) == 32  # ids still reach logs and exemplars


def test_environment_endpoint_is_used(monkeypatch):
    """OTEL_EXPORTER_OTLP_ENDPOINT configures export when configure() names no endpoint."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    state = exporter.configure(metrics_port=None, set_global_tracer_provider=False)
    assert state.tracing.processor is not None
    assert state.tracing.processor.exporter._endpoint == "http://127.0.0.1:9/v1/traces"


def test_explicit_endpoint_wins_over_environment(monkeypatch):
    """An explicit otlp_endpoint wins over the OTEL_* variables."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:8/v1/traces")
    state = exporter.configure(metrics_port=None, set_global_tracer_provider=False,
                               otlp_endpoint="http://127.0.0.1:9/v1/traces")
    assert state.tracing.processor.exporter._endpoint == "http://127.0.0.1:9/v1/traces"


def test_grpc_protocol_from_environment(monkeypatch):
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc picks the gRPC exporter."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    state = exporter.configure(metrics_port=None, set_global_tracer_provider=False,
                               otlp_endpoint="http://127.0.0.1:4317")
    assert type(state.tracing.processor.exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")


def test_tracing_off_still_records_metrics():
    """tracing=False makes no spans but keeps every metric."""
    with testing.capture(tracing=False) as cap:
        with exporter.execution("a") as run:
            assert run.trace_id is None
        assert cap.value("agent_executions_finished_total", agent="a", trigger="manual", status="completed") == 1


def test_objectives_dataclass_and_wildcard():
    """Objectives may be a dataclass, and '*' sets them for every agent."""
    with testing.capture(objectives={"*": exporter.Objectives(completion_ratio=0.9)}) as cap:
        with exporter.execution("any"):
            pass
        assert cap.value("agent_objective", agent="any", objective="completion_ratio") == 0.9


def test_reset_allows_reconfiguring_without_warning():
    """reset() forgets the configuration, so configure() runs again silently."""
    exporter.configure(metrics_port=None, set_global_tracer_provider=False)
    exporter.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exporter.configure(metrics_port=None, set_global_tracer_provider=False)
