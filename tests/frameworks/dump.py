"""Run every framework scenario and write its spans to ``shapes/`` in a compact, neutral form.

Why: the span bridge maps these spans; the JSON files are its reference data (what each
framework and instrumentor really emits), reviewable in a diff when a framework is upgraded.
Span ids become indexes in tree order, ids and tracebacks are masked, long strings are cut to
~200 characters, so two runs write the same files. Regenerate with::

    python -m tests.frameworks.dump
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AttributeValue

from tests.frameworks import SCENARIOS

__all__ = ["CASES", "SHAPES", "Case", "Capture", "capture", "main", "shape", "shape_path"]

SHAPES = Path(__file__).resolve().parent / "shapes"
MAX_STRING = 200
RESOURCE = {"service.name": "framework-harness"}


@dataclass(frozen=True)
class Case:
    """One framework with one instrumentation: the module that runs it and how to call it."""

    module: str
    distributions: tuple[str, ...]
    kwargs: dict[str, str] = field(default_factory=dict)

    def run(self, scenario: str, tracer_provider: TracerProvider) -> None:
        """``module.run(scenario, tracer_provider, **kwargs)``."""
        importlib.import_module(self.module).run(scenario, tracer_provider, **self.kwargs)


_LANGGRAPH = ("langgraph", "langchain-core")
CASES: dict[str, Case] = {
    "pydantic_ai": Case("tests.frameworks.pydantic_ai_agent", ("pydantic-ai-slim",)),
    "openai_agents": Case(
        "tests.frameworks.openai_agents_agent",
        ("openai-agents", "openinference-instrumentation-openai-agents"),
    ),
    "langgraph_openinference": Case(
        "tests.frameworks.langgraph_agent",
        (*_LANGGRAPH, "openinference-instrumentation-langchain"),
        {"instrumentor": "openinference"},
    ),
    "langgraph_openllmetry": Case(
        "tests.frameworks.langgraph_agent",
        (*_LANGGRAPH, "opentelemetry-instrumentation-langchain"),
        {"instrumentor": "openllmetry"},
    ),
}


@dataclass
class Capture:
    """The finished spans of one run, the resource they were made with, and what the run raised."""

    spans: list[ReadableSpan]
    resource: Resource
    raised: BaseException | None


def capture(run: Callable[[TracerProvider], None]) -> Capture:
    """Call ``run`` with a fresh provider that keeps every span in memory; keep its exception."""
    exporter = InMemorySpanExporter()
    resource = Resource.create(RESOURCE)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    raised: BaseException | None = None
    try:
        run(provider)
    except Exception as exc:  # noqa: BLE001 - a failing scenario's exception is part of its shape
        raised = exc
    finally:
        provider.shutdown()
    return Capture(list(exporter.get_finished_spans()), resource, raised)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRACEBACK = "Traceback (most recent call last):"


def _text(value: str) -> str:
    """Mask ids and tracebacks (they differ per run and machine); cut to MAX_STRING characters."""
    value = _UUID.sub("<uuid>", value)
    if _TRACEBACK in value:
        value = value[: value.index(_TRACEBACK)] + "<traceback>"
    if len(value) > MAX_STRING:
        value = f"{value[:MAX_STRING]}…<{len(value)} chars>"
    return value


def _value(value: AttributeValue | None) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Sequence):
        return [_value(v) for v in value]
    return value


def _attributes(attributes: Any) -> dict[str, Any]:
    return {key: _value(attributes[key]) for key in sorted(attributes or {})}


def tree_order(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """Spans depth-first from the roots, siblings by start time: a stable order for indexes."""
    ids = {s.context.span_id for s in spans if s.context}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[ReadableSpan] = []

    def visit(parent: int | None) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.start_time or 0, s.name)):
            ordered.append(span)
            visit(span.context.span_id if span.context else None)

    visit(None)
    return ordered


def shape(result: Capture) -> dict[str, Any]:
    """The neutral form of one run: resource, outcome and each span with parent as an index."""
    ordered = tree_order(result.spans)
    index = {s.context.span_id: i for i, s in enumerate(ordered) if s.context}
    return {
        "raised": type(result.raised).__name__ if result.raised is not None else None,
        "resource": _attributes(result.resource.attributes),
        "spans": [
            {
                "i": i,
                "parent": index.get(span.parent.span_id) if span.parent else None,
                "name": span.name,
                "kind": span.kind.name,
                "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
                "status": {
                    "code": span.status.status_code.name,
                    "description": _text(span.status.description) if span.status.description else None,
                },
                "attributes": _attributes(span.attributes),
                "events": [{"name": e.name, "attributes": _attributes(e.attributes)} for e in span.events],
            }
            for i, span in enumerate(ordered)
        ],
    }


def shape_path(case: str, scenario: str) -> Path:
    """``shapes/<case>_<scenario>.json``."""
    return SHAPES / f"{case}_{scenario}.json"


def dump(case: str, scenario: str) -> dict[str, Any]:
    """Run one case's scenario and return its shape, with the framework versions it was seen with."""
    spec = CASES[case]
    result = capture(lambda provider: spec.run(scenario, provider))
    versions = {d: importlib.metadata.version(d) for d in (*spec.distributions, "opentelemetry-sdk")}
    return {"case": case, "scenario": scenario, "versions": versions, **shape(result)}


def main(argv: Sequence[str] = ()) -> int:
    """Regenerate every shape file (or those of the cases named on the command line)."""
    cases = list(argv) or list(CASES)
    SHAPES.mkdir(exist_ok=True)
    for case in cases:
        for scenario in SCENARIOS:
            data = dump(case, scenario)
            path = shape_path(case, scenario)
            path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
            print(f"{path.name}: {len(data['spans'])} spans, raised {data['raised']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
