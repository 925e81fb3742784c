"""The offline framework harness: each framework runs each scenario and emits the spans we rely on.

These are the facts the span bridge maps (docs/frameworks.md), checked against the real frameworks
with scripted models: which span is the run, which are model calls and tools, where tokens and
failures show. The committed shapes (tests/frameworks/shapes/) must still match what runs here.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.frameworks import INSTALL_HINT, SCENARIOS, Expected, missing_modules, require_frameworks

_MISSING = missing_modules()
if _MISSING and not os.environ.get("CI"):  # under CI the fixture below fails each test instead
    pytest.skip(f"agent frameworks not installed ({', '.join(_MISSING)}): {INSTALL_HINT}", allow_module_level=True)

from tests.frameworks.dump import CASES, Capture, capture, shape, shape_path, tree_order  # noqa: E402
from tests.frameworks.routing import hub  # noqa: E402

KIND = "openinference.span.kind"
OPERATION = "gen_ai.operation.name"


@pytest.fixture(autouse=True)
def _frameworks_installed() -> None:
    """Under CI a missing framework fails every test here (it must not go unnoticed)."""
    require_frameworks()


def _is(key: str, value: str) -> Callable[[ReadableSpan], bool]:
    return lambda span: (span.attributes or {}).get(key) == value


@dataclass(frozen=True)
class Reading:
    """How one instrumentation marks model calls, tool calls and tokens: a minimal reference mapping."""

    scope: str
    model_call: Callable[[ReadableSpan], bool]
    tool_call: Callable[[ReadableSpan], bool]
    input_tokens: str
    output_tokens: str


_GENAI = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
_OPENINFERENCE = ("llm.token_count.prompt", "llm.token_count.completion")
READINGS = {
    "pydantic_ai": Reading("pydantic-ai", _is(OPERATION, "chat"), _is(OPERATION, "execute_tool"), *_GENAI),
    "openai_agents": Reading(
        "openinference.instrumentation.openai_agents", _is(KIND, "LLM"), _is(KIND, "TOOL"), *_OPENINFERENCE
    ),
    "langgraph_openinference": Reading(
        "openinference.instrumentation.langchain", _is(KIND, "LLM"), _is(KIND, "TOOL"), *_OPENINFERENCE
    ),
    "langgraph_openllmetry": Reading(
        "opentelemetry.instrumentation.langchain", _is(OPERATION, "chat"), _is(OPERATION, "execute_tool"), *_GENAI
    ),
}
ALL = [(case, scenario) for case in CASES for scenario in SCENARIOS]


@functools.cache
def run(case: str, scenario: str) -> Capture:
    """One run of a case's scenario (cached: the spans are read by several tests)."""
    return capture(functools.partial(CASES[case].run, scenario))


def expected(case: str, scenario: str) -> Expected:
    """The scenario's declared outcome, from the case's module."""
    module: Any = importlib.import_module(CASES[case].module)
    found: Expected = module.EXPECTED[scenario]
    return found


def raised_name(case: str, scenario: str) -> str:
    """The class name of the exception a failing scenario lets escape."""
    raises = expected(case, scenario).raises
    assert raises is not None
    return raises.__name__


def spans(case: str, scenario: str) -> list[ReadableSpan]:
    """The run's spans in tree order (root first)."""
    return tree_order(run(case, scenario).spans)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})


def named(case: str, scenario: str, name: str) -> list[ReadableSpan]:
    """The run's spans called ``name``."""
    return [s for s in spans(case, scenario) if s.name == name]


# ------------------------------------------------------------------------------------------------
# Every case, every scenario
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "scenario"), ALL)
def test_run_raises_what_the_scenario_declares(case: str, scenario: str) -> None:
    """A failing scenario lets the framework's own exception escape; the others return."""
    raised = run(case, scenario).raised
    want = expected(case, scenario).raises
    if want is None:
        assert raised is None
    else:
        assert type(raised) is want, repr(raised)


@pytest.mark.parametrize(("case", "scenario"), ALL)
def test_one_trace_with_one_root_from_the_instrumentation(case: str, scenario: str) -> None:
    """All spans share one trace and one root, and come from the case's instrumentation alone."""
    found = run(case, scenario).spans
    assert {s.context.trace_id for s in found if s.context} and len({s.context.trace_id for s in found}) == 1
    assert [s.parent for s in found].count(None) == 1
    assert {s.instrumentation_scope.name for s in found if s.instrumentation_scope} == {READINGS[case].scope}


@pytest.mark.parametrize(("case", "scenario"), ALL)
def test_model_calls_tool_calls_and_tokens_add_up(case: str, scenario: str) -> None:
    """Model-call spans, tool spans (ERROR when the tool raised) and their tokens match the script."""
    reading, want, found = READINGS[case], expected(case, scenario), spans(case, scenario)
    models = [s for s in found if reading.model_call(s)]
    tools = [s for s in found if reading.tool_call(s)]
    assert len(models) == want.model_calls
    assert len(tools) == want.tool_calls
    assert sum(s.status.status_code is StatusCode.ERROR for s in tools) == want.tool_errors
    assert sum(attrs(s).get(reading.input_tokens, 0) for s in models) == want.input_tokens
    assert sum(attrs(s).get(reading.output_tokens, 0) for s in models) == want.output_tokens


@pytest.mark.parametrize(("case", "scenario"), ALL)
def test_committed_shape_matches_the_run(case: str, scenario: str) -> None:
    """The reference shape still has this run's span tree (regenerate: python -m tests.frameworks.dump)."""
    committed = json.loads(shape_path(case, scenario).read_text())
    fresh = shape(run(case, scenario))

    def tree(data: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(s["parent"], s["name"], s["kind"], s["status"]["code"]) for s in data["spans"]]

    assert committed["raised"] == fresh["raised"]
    assert tree(committed) == tree(fresh)


# ------------------------------------------------------------------------------------------------
# Pydantic AI: native GenAI spans
# ------------------------------------------------------------------------------------------------


def test_pydantic_ai_root_is_invoke_agent_with_the_agent_name() -> None:
    """The run is an INTERNAL ``invoke_agent {name}`` root carrying ``gen_ai.agent.name``."""
    root = spans("pydantic_ai", "ok")[0]
    assert root.name == "invoke_agent weather"
    assert attrs(root)[OPERATION] == "invoke_agent"
    assert attrs(root)["gen_ai.agent.name"] == "weather"


def test_pydantic_ai_root_totals_use_aggregated_names_not_usage() -> None:
    """The root sums tokens under ``gen_ai.aggregated_usage.*``, so counting ``gen_ai.usage.*`` counts once."""
    root = attrs(spans("pydantic_ai", "ok")[0])
    assert "gen_ai.usage.input_tokens" not in root
    assert (root["gen_ai.aggregated_usage.input_tokens"], root["gen_ai.aggregated_usage.output_tokens"]) == (130, 30)


def test_pydantic_ai_chat_spans_are_clients_with_usage() -> None:
    """Each model request is a CLIENT ``chat {model}`` span with its own input/output tokens."""
    chats = named("pydantic_ai", "ok", "chat scripted")
    assert [s.kind for s in chats] == [trace.SpanKind.CLIENT] * 2
    assert [attrs(s)["gen_ai.usage.input_tokens"] for s in chats] == [50, 80]


def test_pydantic_ai_raising_tool_is_error_without_error_type() -> None:
    """A raising tool's ``execute_tool`` span is ERROR with an exception event but no ``error.type``."""
    (tool,) = named("pydantic_ai", "tool_raises", "execute_tool lookup")
    assert tool.status.status_code is StatusCode.ERROR
    assert [e.name for e in tool.events] == ["exception"]
    assert "error.type" not in attrs(tool)
    assert attrs(tool)["gen_ai.tool.name"] == "lookup" and attrs(tool)["gen_ai.tool.call.id"] == "call_1"


@pytest.mark.parametrize("scenario", ["tool_raises", "fails", "model_error"])
def test_pydantic_ai_failed_run_marks_the_root(scenario: str) -> None:
    """A failed run's root is ERROR with the exception's type in its description and an event."""
    root = spans("pydantic_ai", scenario)[0]
    assert root.status.status_code is StatusCode.ERROR
    assert (root.status.description or "").startswith(raised_name("pydantic_ai", scenario))
    assert "exception" in [e.name for e in root.events]


# ------------------------------------------------------------------------------------------------
# OpenAI Agents SDK + OpenInference
# ------------------------------------------------------------------------------------------------


def test_openai_agents_spans_agent_tool_and_llm() -> None:
    """Root AGENT ``Agent workflow``; the agent is an AGENT span with ``agent.name``; tools and LLMs below."""
    found = spans("openai_agents", "ok")
    assert (found[0].name, attrs(found[0])[KIND]) == ("Agent workflow", "AGENT")
    (agent,) = [s for s in found if attrs(s).get("agent.name")]
    assert (agent.name, attrs(agent)[KIND], attrs(agent)["agent.name"]) == ("weather", "AGENT", "weather")
    (tool,) = [s for s in found if attrs(s)[KIND] == "TOOL"]
    assert (tool.name, attrs(tool)["tool.name"]) == ("lookup", "lookup")
    assert [attrs(s)["llm.token_count.prompt"] for s in found if attrs(s)[KIND] == "LLM"] == [50, 80]


@pytest.mark.parametrize("scenario", ["fails", "model_error"])
def test_openai_agents_root_stays_ok_when_the_run_failed(scenario: str) -> None:
    """The trap: the root span is OK although the run raised."""
    assert run("openai_agents", scenario).raised is not None
    assert spans("openai_agents", scenario)[0].status.status_code is StatusCode.OK


def test_openai_agents_model_error_marks_the_agent_span() -> None:
    """An exception from the model marks the agent span (and the LLM span) ERROR."""
    found = spans("openai_agents", "model_error")
    (agent,) = [s for s in found if attrs(s).get("agent.name")]
    assert agent.status.status_code is StatusCode.ERROR
    assert found[-1].name == "response" and found[-1].status.status_code is StatusCode.ERROR


def test_openai_agents_output_validation_failure_shows_only_on_a_turn_span() -> None:
    """The second trap: a ModelBehaviorError leaves the agent span OK; only a ``turn`` CHAIN is ERROR."""
    found = spans("openai_agents", "fails")
    (agent,) = [s for s in found if attrs(s).get("agent.name")]
    assert agent.status.status_code is StatusCode.OK
    errors = [s for s in found if s.status.status_code is StatusCode.ERROR]
    assert [(s.name, attrs(s)[KIND]) for s in errors] == [("turn", "CHAIN")]


def test_openai_agents_raising_tool_is_error_but_the_run_succeeds() -> None:
    """The SDK sends a tool's error back to the model: TOOL span ERROR, agent span OK, run answered."""
    found = spans("openai_agents", "tool_raises")
    assert run("openai_agents", "tool_raises").raised is None
    errors = [s for s in found if s.status.status_code is StatusCode.ERROR]
    assert [attrs(s)[KIND] for s in errors] == ["TOOL"]


def test_openai_agents_traces_go_nowhere_but_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instrumentor displaces the SDK's exporter to OpenAI: a flushed run hands it nothing."""
    from agents.tracing import flush_traces
    from agents.tracing.processors import BackendSpanExporter

    exported: list[object] = []
    monkeypatch.setattr(BackendSpanExporter, "export", lambda self, items: exported.extend(items))
    monkeypatch.setattr(
        BackendSpanExporter, "_export_with_deadline", lambda self, items, deadline: exported.extend(items)
    )
    assert capture(functools.partial(CASES["openai_agents"].run, "ok")).spans
    flush_traces()
    assert exported == []


# ------------------------------------------------------------------------------------------------
# LangGraph + OpenInference
# ------------------------------------------------------------------------------------------------


def test_langgraph_openinference_root_is_the_graph_chain() -> None:
    """No AGENT root: the run is a CHAIN span named after the compiled graph."""
    root = spans("langgraph_openinference", "ok")[0]
    assert (root.name, attrs(root)[KIND]) == ("weather", "CHAIN")


def test_langgraph_openinference_nodes_carry_langgraph_node_metadata() -> None:
    """Each node's span is a child of the root whose ``metadata`` JSON names it in ``langgraph_node``."""
    found = spans("langgraph_openinference", "ok")
    root_id = found[0].context.span_id if found[0].context else None
    nodes = [s for s in found if s.parent and s.parent.span_id == root_id]
    assert [s.name for s in nodes] == ["agent", "tools", "agent"]
    assert [json.loads(attrs(s)["metadata"])["langgraph_node"] for s in nodes] == ["agent", "tools", "agent"]


def test_langgraph_openinference_router_shares_its_nodes_metadata() -> None:
    """The trap: the ``tools_condition`` router is a CHAIN with the same ``langgraph_node`` as its node."""
    routers = named("langgraph_openinference", "ok", "tools_condition")
    assert [json.loads(attrs(s)["metadata"])["langgraph_node"] for s in routers] == ["agent", "agent"]
    assert {attrs(s)[KIND] for s in routers} == {"CHAIN"}


def test_langgraph_openinference_span_kind_agent_is_a_name_heuristic() -> None:
    """The trap: a node whose name contains "agent" becomes an AGENT span (not a run of its own)."""
    assert {attrs(s)[KIND] for s in named("langgraph_openinference", "ok", "agent")} == {"AGENT"}


@pytest.mark.parametrize("scenario", ["tool_raises", "fails", "model_error"])
def test_langgraph_openinference_failed_run_marks_the_root(scenario: str) -> None:
    """A failed run's root CHAIN is ERROR with an exception event naming the exception type."""
    root = spans("langgraph_openinference", scenario)[0]
    assert root.status.status_code is StatusCode.ERROR
    (event,) = root.events
    assert event.name == "exception"
    assert str((event.attributes or {})["exception.type"]).endswith(raised_name("langgraph_openinference", scenario))


# ------------------------------------------------------------------------------------------------
# LangGraph + OpenLLMetry
# ------------------------------------------------------------------------------------------------


def test_langgraph_openllmetry_root_is_invoke_agent_with_tasks_and_tools() -> None:
    """Root ``invoke_agent {graph}``, each node an ``execute_task {node}``, the tool ``execute_tool {tool}``."""
    found = spans("langgraph_openllmetry", "ok")
    assert (found[0].name, attrs(found[0])[OPERATION], attrs(found[0])["gen_ai.agent.name"]) == (
        "invoke_agent weather", "invoke_agent", "weather",
    )
    tasks = [attrs(s)["gen_ai.task.name"] for s in found if attrs(s).get(OPERATION) == "execute_task"]
    assert sorted(tasks) == ["agent", "agent", "tools", "tools_condition", "tools_condition"]
    assert [s.name for s in found if attrs(s).get(OPERATION) == "execute_tool"] == ["execute_tool lookup"]


def test_langgraph_openllmetry_emits_two_invoke_agent_spans_per_run() -> None:
    """The trap: ``{graph}.workflow`` under the root is a second ``invoke_agent`` span for the same run."""
    found = spans("langgraph_openllmetry", "ok")
    agents = [s.name for s in found if attrs(s).get(OPERATION) == "invoke_agent"]
    assert agents == ["invoke_agent weather", "weather.workflow"]


def test_langgraph_openllmetry_leaves_status_unset_on_success() -> None:
    """A successful run sets no status at all: success is UNSET, not OK."""
    assert {s.status.status_code for s in spans("langgraph_openllmetry", "ok")} == {StatusCode.UNSET}


@pytest.mark.parametrize("scenario", ["tool_raises", "fails", "model_error"])
def test_langgraph_openllmetry_failure_sets_error_type(scenario: str) -> None:
    """A failed run: root ERROR; the workflow span and each failed span carry ``error.type``."""
    found = spans("langgraph_openllmetry", scenario)
    assert found[0].status.status_code is StatusCode.ERROR
    want = raised_name("langgraph_openllmetry", scenario)
    (workflow,) = named("langgraph_openllmetry", scenario, "weather.workflow")
    assert attrs(workflow)["error.type"] == want
    assert all("error.type" in attrs(s) for s in found[1:] if s.status.status_code is StatusCode.ERROR)


def test_langgraph_openllmetry_raising_tool_fails_its_task_and_tool() -> None:
    """ToolNode re-raises: ``execute_tool`` and its ``execute_task tools`` are ERROR with ``error.type``."""
    found = spans("langgraph_openllmetry", "tool_raises")
    failed = [s.name for s in found[2:] if s.status.status_code is StatusCode.ERROR]
    assert failed == ["execute_task tools", "execute_tool lookup"]


# ------------------------------------------------------------------------------------------------
# The harness leaves the rest of the process alone
# ------------------------------------------------------------------------------------------------


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize("case", ["openai_agents", "langgraph_openinference", "langgraph_openllmetry"])
def test_outside_a_run_the_instrumentation_emits_nothing(case: str) -> None:
    """After a run (even a failed one) the switch is back to no-op: a framework run outside sends nothing."""
    provider, exporter = _provider()
    with pytest.raises(Exception):  # noqa: B017 - the scenario's own exception
        CASES[case].run("model_error", provider)
    during = len(exporter.get_finished_spans())
    assert during > 0
    assert isinstance(hub.target, trace.NoOpTracerProvider)
    module = importlib.import_module(CASES[case].module)
    if case == "openai_agents":
        from agents import Runner

        Runner.run_sync(module.build_agent("ok"), "hi")
    else:
        module.build_graph("ok").invoke({"messages": [("user", "hi")]})
    assert len(exporter.get_finished_spans()) == during


def test_the_global_tracer_provider_is_never_set() -> None:
    """Running every case leaves OpenTelemetry's global tracer provider as it was."""
    before = trace.get_tracer_provider()
    for case in CASES:
        capture(functools.partial(CASES[case].run, "ok"))
    assert trace.get_tracer_provider() is before


def test_switching_langchain_instrumentors_leaves_one_active() -> None:
    """Alternating instrumentors never doubles spans: each run's spans come from one scope only."""
    for case in ["langgraph_openllmetry", "langgraph_openinference", "langgraph_openllmetry"]:
        found = capture(functools.partial(CASES[case].run, "ok")).spans
        assert {s.instrumentation_scope.name for s in found if s.instrumentation_scope} == {READINGS[case].scope}
        assert len(found) == len(spans(case, "ok"))


def test_unknown_scenario_is_rejected() -> None:
    """A typo in a scenario name is a ValueError, not a silent default run."""
    provider, _ = _provider()
    with pytest.raises(ValueError, match="unknown scenario"):
        CASES["pydantic_ai"].run("okay", provider)
