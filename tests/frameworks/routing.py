"""A tracer provider that process-global instrumentation can hold while each run picks the real one.

Why: instrumentors take a tracer provider once, at ``instrument()``, and keep it for the life of the
process; tests need a fresh provider (with their own processors and resource) for every run, and no
spans at all outside a run. ``SwitchTracerProvider`` hands out tracers that look up the current
target on every span start, so spans are made by the target provider itself (its resource, its
processors, its ids) and by a no-op tracer when no run is in progress. Only the public
``opentelemetry.trace`` API is used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as trace_api

__all__ = ["SwitchTracerProvider", "hub", "offline_environment", "route_spans_to"]

_NOOP = trace_api.NoOpTracerProvider()


class SwitchTracerProvider(trace_api.TracerProvider):
    """Delegates to the provider set by ``route_spans_to``; a no-op provider otherwise."""

    def __init__(self) -> None:
        self._target: trace_api.TracerProvider = _NOOP
        self._runs = threading.Lock()  # one routed run at a time: the target is process-wide

    @property
    def target(self) -> trace_api.TracerProvider:
        """The provider spans go to right now."""
        return self._target

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        """A tracer that resolves the target when a span starts, not now."""
        return _SwitchTracer(self, args, kwargs)


class _SwitchTracer(trace_api.Tracer):
    """Starts each span with the same-named tracer of the switch's current target."""

    def __init__(self, switch: SwitchTracerProvider, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._switch = switch
        self._args = args
        self._kwargs = kwargs

    def _current(self) -> trace_api.Tracer:
        return self._switch.target.get_tracer(*self._args, **self._kwargs)

    def start_span(self, *args: Any, **kwargs: Any) -> trace_api.Span:
        """Start a span on the current target."""
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        """Start a current span on the current target (a context manager, as the API's)."""
        return self._current().start_as_current_span(*args, **kwargs)


hub = SwitchTracerProvider()
"""The one switch every instrumentor in this package is instrumented with."""


@contextmanager
def route_spans_to(tracer_provider: trace_api.TracerProvider) -> Iterator[None]:
    """Send the instrumented frameworks' spans to ``tracer_provider`` for the block's duration."""
    with hub._runs:
        hub._target = tracer_provider
        try:
            yield
        finally:
            hub._target = _NOOP


def offline_environment() -> None:
    """Make sure nothing in the frameworks phones home: no API key, no LangSmith tracing."""
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ["LANGSMITH_TRACING"] = "false"
    os.environ["LANGCHAIN_TRACING_V2"] = "false"
    os.environ["LANGSMITH_TRACING_V2"] = "false"
