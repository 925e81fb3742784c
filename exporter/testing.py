"""Helpers for users' own tests: spans in memory, a fresh registry, a metric's value.

from exporter import testing

def test_my_agent():
    with testing.capture() as cap:
        run_my_agent()
    assert cap.value("agent_executions_finished_total", agent="invoice", status="completed") == 1
    assert [s.name for s in cap.spans()][-1] == "invoke_workflow invoice"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from . import _config
from .traces.sampling import SamplingSpanProcessor


def fresh_registry() -> CollectorRegistry:
    """A new, empty registry, so one test's counts never leak into another's."""
    return CollectorRegistry(auto_describe=True)


def metric_value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The value of one sample (0.0 when absent); histograms: pass `name_count` / `name_sum`.

    A counter may be named with or without `_total`.
    """
    value = registry.get_sample_value(name, labels)
    if value is None and not name.endswith(("_total", "_count", "_sum", "_bucket")):
        value = registry.get_sample_value(name + "_total", labels)
    return float(value) if value is not None else 0.0


def metric_total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


class Capture:
    """A configured library whose spans stay in memory and whose metrics live in a fresh registry."""

    def __init__(self, registry: CollectorRegistry, exporter: InMemorySpanExporter, state: Any) -> None:
        self.registry = registry
        self.exporter = exporter
        self.state = state

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def value(self, name: str, **labels: str) -> float:
        return metric_value(self.registry, name, **labels)

    def total(self, name: str, **labels: str) -> float:
        return metric_total(self.registry, name, **labels)


@contextmanager
def capture(**configure_kwargs: Any) -> Iterator[Capture]:
    """Configure the library for one test: no server, spans in memory, a fresh registry.

    Any configuration in place is reset first and again afterwards.
    """
    _config.reset()
    registry = fresh_registry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SamplingSpanProcessor(SimpleSpanProcessor(exporter)))  # sample_healthy= works
    kwargs: dict[str, Any] = {"metrics_port": None, "registry": registry, "tracer_provider": provider}
    kwargs.update(configure_kwargs)
    state = _config.configure(**kwargs)
    try:
        yield Capture(registry, exporter, state)
    finally:
        _config.reset()
        provider.shutdown()
