"""Whose TracerProvider makes the library's spans, reset(), the fork hook, and flush().

OpenTelemetry sets the global TracerProvider once per process; every test here starts with it
unset and puts the original back afterwards, the way opentelemetry-python's own tests do
(`opentelemetry.test.globals_test.reset_trace_globals`). The application's side is an SDK
TracerProvider with an InMemorySpanExporter; the library's side is the OTLP receiver.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

import exporter
from exporter import _config
from exporter.testing import fresh_registry
from exporter.traces import export as tracing_mod
from tests.servers import OtlpReceiver, ReceivedSpan, free_port

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_PYTHON_TRACER_PROVIDER",
)


@pytest.fixture(autouse=True)
def _fresh_otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No global TracerProvider and no OTEL_* variables; the library unconfigured before and after."""
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    exporter.reset()
    yield
    exporter.reset()


class App:
    """An application's own tracing: an SDK provider exporting to memory."""

    def __init__(self, processor: str = "simple", exporter_: SpanExporter | None = None) -> None:
        self.exporter = exporter_ or InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        proc = SimpleSpanProcessor(self.exporter) if processor == "simple" else BatchSpanProcessor(self.exporter)
        self.provider.add_span_processor(proc)
        self.tracer = self.provider.get_tracer("my-app")

    def set_global(self) -> None:
        trace.set_tracer_provider(self.provider)

    def names(self) -> set[str]:
        assert isinstance(self.exporter, InMemorySpanExporter)
        return {s.name for s in self.exporter.get_finished_spans()}

    def span(self, name: str) -> ReadableSpan:
        assert isinstance(self.exporter, InMemorySpanExporter)
        return next(s for s in self.exporter.get_finished_spans() if s.name == name)


def _configure(**kwargs: Any) -> _config.State:
    kwargs.setdefault("service_name", "lib-service")
    return exporter.configure(metrics_port=None, registry=fresh_registry(), log_level="off", **kwargs)


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def _received(receiver: OtlpReceiver, name: str) -> ReceivedSpan:
    return next(s for s in receiver.spans() if s.name == name)


def _nested_run(app: App) -> None:
    """App span ▸ execution ▸ step ▸ app span: the two sides nested both ways."""
    with app.tracer.start_as_current_span("app outer"):
        with exporter.execution("a") as run, run.step("Work"):
            with app.tracer.start_as_current_span("app inner"):
                pass


def test_app_first_with_endpoint_each_side_gets_only_its_own_spans(otlp_receiver: OtlpReceiver) -> None:
    """App provider set first + otlp_endpoint: the app's exporter gets no library span, and the trace still nests."""
    app = App()
    app.set_global()
    _configure(otlp_endpoint=otlp_receiver.url)
    _nested_run(app)
    exporter.shutdown(timeout=5)

    assert app.names() == {"app outer", "app inner"}
    assert {s.name for s in otlp_receiver.spans()} == {"invoke_workflow a", "Work"}
    assert {s.resource_attributes.get("service.name") for s in otlp_receiver.spans()} == {"lib-service"}
    outer, inner = app.span("app outer"), app.span("app inner")
    execution, step = _received(otlp_receiver, "invoke_workflow a"), _received(otlp_receiver, "Work")
    assert execution.parent_span_id == _hex(outer.context.span_id, 16)
    assert execution.trace_id == _hex(outer.context.trace_id, 32)
    assert inner.parent is not None and _hex(inner.parent.span_id, 16) == step.span_id


def test_app_after_with_endpoint_can_set_its_provider(otlp_receiver: OtlpReceiver) -> None:
    """configure(otlp_endpoint) first: the app's later set_tracer_provider takes effect and its spans reach it."""
    _configure(otlp_endpoint=otlp_receiver.url)
    app = App()
    app.set_global()
    assert trace.get_tracer_provider() is app.provider
    _nested_run(app)
    exporter.shutdown(timeout=5)

    assert app.names() == {"app outer", "app inner"}
    assert {s.name for s in otlp_receiver.spans()} == {"invoke_workflow a", "Work"}
    inner = app.span("app inner")
    assert inner.parent is not None and _hex(inner.parent.span_id, 16) == _received(otlp_receiver, "Work").span_id


def test_app_after_without_endpoint_library_spans_follow_the_app() -> None:
    """configure() first, no endpoint: spans before the app's set-up have ids, spans after go to the app's provider."""
    _configure()
    with exporter.execution("early") as early:
        pass
    assert early.trace_id is not None and len(early.trace_id) == 32

    app = App()
    app.set_global()
    assert trace.get_tracer_provider() is app.provider
    _nested_run(app)
    assert app.names() == {"app outer", "invoke_workflow a", "Work", "app inner"}
    assert app.span("invoke_workflow a").parent.span_id == app.span("app outer").context.span_id  # type: ignore[union-attr]
    assert app.span("app inner").parent.span_id == app.span("Work").context.span_id  # type: ignore[union-attr]


def test_app_first_without_endpoint_library_spans_join_the_app_pipeline() -> None:
    """App provider set first, no endpoint: the library's spans go where the app's go."""
    app = App()
    app.set_global()
    state = _configure()
    assert state.tracing.provider is app.provider and state.tracing.processor is None
    _nested_run(app)
    assert app.names() == {"app outer", "invoke_workflow a", "Work", "app inner"}


def test_no_app_tracing_exports_and_leaves_the_global_provider_unset(otlp_receiver: OtlpReceiver) -> None:
    """Without app tracing the library exports its spans and does not take the global provider."""
    _configure(otlp_endpoint=otlp_receiver.url)
    with exporter.execution("a"):
        pass
    exporter.shutdown(timeout=5)
    assert [s.name for s in otlp_receiver.spans()] == ["invoke_workflow a"]
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_environment_endpoint_exports_after_reset(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """reset() then configure() with OTEL_EXPORTER_OTLP_ENDPOINT set still exports the spans."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    _configure()
    exporter.reset()
    _configure()
    with exporter.execution("after-reset"):
        pass
    exporter.shutdown(timeout=5)
    assert [s.name for s in otlp_receiver.spans()] == ["invoke_workflow after-reset"]


def test_global_provider_of_an_earlier_configuration_is_not_taken_for_the_apps(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After configure(set_global_tracer_provider=True) and reset(), the next configure() exports its own spans."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    _configure(set_global_tracer_provider=True)
    exporter.reset()
    _configure()
    with exporter.execution("second"):
        pass
    exporter.shutdown(timeout=5)
    assert [s.name for s in otlp_receiver.spans()] == ["invoke_workflow second"]


def test_set_global_makes_the_library_provider_the_process_provider(otlp_receiver: OtlpReceiver) -> None:
    """set_global_tracer_provider=True: other instrumentations' spans go out through the library's provider."""
    state = _configure(otlp_endpoint=otlp_receiver.url, set_global_tracer_provider=True)
    assert trace.get_tracer_provider() is state.tracing.provider
    with exporter.execution("a"):
        trace.get_tracer("some.instrumentation").start_span("http GET").end()
    exporter.shutdown(timeout=5)
    assert {s.name for s in otlp_receiver.spans()} == {"invoke_workflow a", "http GET"}


def test_set_global_again_after_reset_warns() -> None:
    """set_global_tracer_provider=True after reset() warns that OTel keeps the first global provider."""
    first = _configure(set_global_tracer_provider=True).tracing.provider
    exporter.reset()
    with pytest.warns(RuntimeWarning, match="once per process"):
        _configure(set_global_tracer_provider=True)
    assert trace.get_tracer_provider() is first


def test_set_global_when_the_app_set_one_is_a_value_error() -> None:
    """set_global_tracer_provider=True with an app provider already global fails at once, naming the fix."""
    App().set_global()
    with pytest.raises(ValueError, match="already set a global TracerProvider"):
        _configure(set_global_tracer_provider=True)


def test_tracer_provider_with_an_endpoint_is_a_value_error() -> None:
    """tracer_provider= with otlp_endpoint= would send the app's spans to the library's endpoint: refused."""
    with pytest.raises(ValueError, match="both given"):
        _configure(tracer_provider=App().provider, otlp_endpoint="http://127.0.0.1:9")


def test_reset_leaves_an_injected_provider_working() -> None:
    """reset() shuts down what the library made, not the provider the app passed in."""
    app = App()
    _configure(tracer_provider=app.provider)
    exporter.reset()
    app.tracer.start_span("after reset").end()
    assert app.names() == {"after reset"}


def test_global_provider_read_matches_the_public_api() -> None:
    """The fast read of OTel's global provider (a private name) agrees with get_tracer_provider()."""
    assert tracing_mod._global_provider() is None
    app = App()
    app.set_global()
    assert tracing_mod._global_provider() is trace.get_tracer_provider() is app.provider


def test_no_fork_hook_per_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure()/reset() cycles add no os.register_at_fork hook each (one module-level hook serves all)."""
    hooks: list[Any] = []
    real = os.register_at_fork

    def recording(**kwargs: Any) -> None:
        hooks.append(kwargs.get("after_in_child"))
        real(**kwargs)

    monkeypatch.setattr(os, "register_at_fork", recording)
    for _ in range(3):
        _configure(span_exporter=InMemorySpanExporter())
        exporter.reset()
    per_processor = [h for h in hooks if isinstance(getattr(h, "__self__", None), tracing_mod.BoundedSpanProcessor)]
    assert per_processor == []


def _child_run(ok: Any) -> None:
    with exporter.execution("child", task_id="forked"):
        pass
    ok.value = int(exporter.flush(timeout=5))


def test_forked_worker_exports_its_spans(otlp_receiver: OtlpReceiver) -> None:
    """A worker forked after configure() gets its own export thread: its spans arrive."""
    _configure(otlp_endpoint=otlp_receiver.url)
    ctx = mp.get_context("fork")
    ok = ctx.Value("i", 0)
    child = ctx.Process(target=_child_run, args=(ok,))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and ok.value == 1
    assert [s.attributes.get("task.id") for s in otlp_receiver.spans()] == ["forked"]


# ---------------------------------------------------------------------------------------- flush()


def test_flush_unconfigured_is_true() -> None:
    """flush() with nothing configured does nothing and reports nothing pending."""
    assert exporter.flush() is True


def test_flush_with_a_live_receiver_delivers_before_returning(otlp_receiver: OtlpReceiver) -> None:
    """flush() returns True once the spans are at the receiver."""
    _configure(otlp_endpoint=otlp_receiver.url)
    with exporter.execution("a") as run, run.step("s"):
        pass
    assert exporter.flush(timeout=5) is True
    assert {s.name for s in otlp_receiver.spans()} == {"invoke_workflow a", "s"}


def test_flush_with_a_dead_endpoint_returns_false_in_bounded_time() -> None:
    """flush(timeout=0.5) to a dead endpoint returns False, and returns (loose bound: 5 s)."""
    _configure(otlp_endpoint=f"http://127.0.0.1:{free_port()}", export_timeout=3.0)
    with exporter.execution("a"):
        pass
    t0 = time.monotonic()
    assert exporter.flush(timeout=0.5) is False
    assert time.monotonic() - t0 < 5.0


class _Refusing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


class _Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter bug")


@pytest.mark.parametrize("span_exporter", [_Refusing(), _Raising()], ids=["refusing", "raising"])
def test_flush_reports_spans_that_were_dropped(span_exporter: SpanExporter) -> None:
    """An export that fails quickly still makes flush() return False, and nothing raises."""
    _configure(span_exporter=span_exporter)
    with exporter.execution("a"):
        pass
    assert exporter.flush(timeout=5) is False


@pytest.mark.parametrize("timeout", [float("nan"), -1.0, "soon"])
def test_flush_never_raises_on_a_bad_timeout(timeout: Any) -> None:
    """A nonsensical timeout gives a bool back, not an exception."""
    _configure(span_exporter=InMemorySpanExporter())
    assert isinstance(exporter.flush(timeout=timeout), bool)


def test_flush_includes_the_app_provider_the_library_spans_go_to() -> None:
    """With the library's spans in the app's batching pipeline, flush() pushes them out too."""
    app = App(processor="batch")
    app.set_global()
    _configure()
    with exporter.execution("a"):
        pass
    assert exporter.flush(timeout=5) is True
    assert app.names() == {"invoke_workflow a"}
    app.provider.shutdown()


class _Hanging(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        return SpanExportResult.SUCCESS


def test_flush_of_a_hanging_app_provider_is_bounded() -> None:
    """A hanging app exporter (the SDK ignores flush timeouts) costs flush() its timeout, then False; later ones run."""
    hanging = _Hanging()
    app = App(processor="batch", exporter_=hanging)
    app.set_global()
    _configure()
    with exporter.execution("a"):
        pass
    try:
        t0 = time.monotonic()
        assert exporter.flush(timeout=0.5) is False
        assert time.monotonic() - t0 < 5.0
        hanging.release.set()
        assert exporter.flush(timeout=5) is True  # the stuck flush ends; the next one runs
    finally:
        hanging.release.set()
        app.provider.shutdown()
        if tracing_mod._app_flush is not None:
            tracing_mod._app_flush.join(10)
