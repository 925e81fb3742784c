"""configure(): errors at set-up, the no-op default, reuse of the application's TracerProvider."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import exporter
from exporter import testing
from tests.servers import free_port


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


CONFIGURE_KEYWORDS = list(inspect.signature(exporter.configure).parameters)


@pytest.mark.parametrize("keyword", CONFIGURE_KEYWORDS)
def test_every_keyword_is_checked(keyword):
    """Each configure() keyword refuses a value of no sensible type with a ValueError naming it."""
    kwargs = {"metrics_port": None, keyword: object()}
    with pytest.raises(ValueError, match=keyword):
        exporter.configure(**kwargs)
    assert exporter.registry() is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capture_content": "yes"},
        {"capture_content": 0},
        {"tracing": "no"},
        {"set_global_tracer_provider": 1},
        {"metrics_client_auth_required": "yes", "metrics_certfile": "c.pem", "metrics_keyfile": "k.pem"},
        {"export_timeout": "5"},
        {"export_timeout": math.inf},
        {"export_timeout": True},
        {"shutdown_timeout": "1"},
        {"max_duration": True},
        {"max_duration": math.inf},
        {"review_threshold": True},
        {"max_label_values": True},
        {"max_agents": True},
        {"max_content_bytes": 1000.0},
        {"log_level": ["info"]},
        {"metrics_addr": 127001},
        {"registry": "default"},
        {"tracer_provider": "global"},
        {"span_exporter": "console"},
        {"objectives": {1: {"completion_ratio": 0.9}}},
    ],
    ids=repr,
)
def test_wrong_types_are_value_errors(kwargs):
    """A flag that is not a bool, a number that is a string, bool or infinite, a wrong object: ValueError."""
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        exporter.configure(metrics_port=None, **kwargs)
    assert exporter.registry() is None


def test_objectives_not_a_mapping_is_a_value_error():
    """objectives=[...] is a ValueError naming objectives, not an AttributeError."""
    with pytest.raises(ValueError, match="objectives"):
        exporter.configure(metrics_port=None, objectives=[{"completion_ratio": 0.9}])


@pytest.mark.parametrize(("level", "number"), [("DEBUG", 10), ("Warning", 30), ("OFF", 100)])
def test_log_level_accepts_any_case(level, number):
    """log_level="DEBUG" means what "debug" means."""
    state = exporter.configure(metrics_port=None, log_level=level, set_global_tracer_provider=False)
    assert state.settings.log_level == number


@pytest.mark.parametrize(
    "endpoint", ["ftp://x", "x://localhost:4318", "http://", "https:///v1/traces", "http://host:99999", "//host:4318"]
)
def test_otlp_endpoint_must_be_http_with_a_host(endpoint):
    """otlp_endpoint is an http:// or https:// URL with a host; anything else is refused at once."""
    with pytest.raises(ValueError, match="otlp_endpoint"):
        exporter.configure(metrics_port=None, otlp_endpoint=endpoint)


@pytest.mark.parametrize("addr", ["256.1.1.1", "no-such-host.invalid"])
def test_bind_failure_on_a_bad_address_names_the_address(addr):
    """An address that cannot be bound is blamed, not the TLS files nobody passed."""
    with pytest.raises(ValueError, match="metrics_addr") as raised:
        exporter.configure(metrics_port=free_port(), metrics_addr=addr, tracing=False)
    assert "certfile" not in str(raised.value)
    assert exporter.registry() is None


def test_second_configure_with_invalid_arguments_raises():
    """A second call is checked too: an invalid argument is a ValueError, and the first configuration stays."""
    first = exporter.configure(metrics_port=None, service_name="one", set_global_tracer_provider=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="capture_content"):
            exporter.configure(metrics_port=None, capture_content="yes")
    assert exporter.registry() is first.metrics.registry


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
