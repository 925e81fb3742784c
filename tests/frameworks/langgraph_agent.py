"""A LangGraph agent (model node + ToolNode) with a fake chat model, traced by a LangChain instrumentor.

Why: LangGraph has no tracing of its own beyond LangChain callbacks; its spans come from the
OpenInference (``openinference``) or the OpenLLMetry (``openllmetry``) LangChain instrumentor, and
the two describe the same run very differently. ``GenericFakeChatModel.bind_tools`` raises
``NotImplementedError``, so ``ScriptedChatModel`` binds the tool schemas itself; its messages carry
``usage_metadata``, which is where both instrumentors read tokens from. The graph is the usual
hand-built ReAct loop: node ``agent`` calls the model, ``tools_condition`` routes to node ``tools``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import wrapt
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.errors import GraphRecursionError
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider

from tests.frameworks import FIRST_CALL_TOKENS, SCENARIOS, SECOND_CALL_TOKENS, Expected
from tests.frameworks.routing import hub, offline_environment, route_spans_to

__all__ = ["EXPECTED", "GRAPH_NAME", "INSTRUMENTORS", "RECURSION_LIMIT", "TOOL_NAME", "instrument", "run"]

Instrumentor = Literal["openinference", "openllmetry"]
INSTRUMENTORS: tuple[Instrumentor, ...] = ("openinference", "openllmetry")

GRAPH_NAME = "weather"
TOOL_NAME = "lookup"
# The ``fails`` model asks for the tool forever; 4 super-steps are agent, tools, agent, tools.
RECURSION_LIMIT = 4

_IN1, _OUT1 = FIRST_CALL_TOKENS
_IN2, _OUT2 = SECOND_CALL_TOKENS

EXPECTED: dict[str, Expected] = {
    "ok": Expected(None, 2, 1, 0, _IN1 + _IN2, _OUT1 + _OUT2),
    # ToolNode's default handler re-raises anything but invalid tool arguments: the run fails.
    "tool_raises": Expected(RuntimeError, 1, 1, 1, _IN1, _OUT1),
    # The model never stops asking for the tool: LangGraph's recursion limit ends the run.
    "fails": Expected(GraphRecursionError, 2, 2, 0, 2 * _IN1, 2 * _OUT1),
    "model_error": Expected(RuntimeError, 2, 1, 0, _IN1, _OUT1),
}
assert set(EXPECTED) == set(SCENARIOS)

_INSTRUMENTORS = {"openinference": LangChainInstrumentor, "openllmetry": LangchainInstrumentor}
_active: Instrumentor | None = None

# What OpenLLMetry's LangchainInstrumentor wraps (0.62.4). Its uninstrument() calls
# unwrap("langchain_core.callbacks", "BaseCallbackManager.__init__"), which resolves the owner one
# dot too early, finds nothing and leaves every wrapper in place: switching to OpenInference would
# then emit both instrumentors' spans. _undo_openllmetry() removes the wrappers itself.
_OPENLLMETRY_PATCHES = (
    ("langchain_core.callbacks", "BaseCallbackManager", "__init__"),
    ("langgraph.pregel", "Pregel", "stream"),
    ("langgraph.pregel", "Pregel", "astream"),
    ("langgraph.types", "Command", "__init__"),
    ("langgraph.prebuilt.chat_agent_executor", None, "create_react_agent"),
    ("langgraph.prebuilt", None, "create_react_agent"),
)


class ScriptedChatModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that accepts tools (the scripted replies already name them)."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind the tools' OpenAI schemas, as a real chat model would (``tool_choice`` is ignored)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def _tool_call(n: int) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": TOOL_NAME, "args": {"city": "Paris"}, "id": f"call_{n}", "type": "tool_call"}],
        usage_metadata={"input_tokens": _IN1, "output_tokens": _OUT1, "total_tokens": _IN1 + _OUT1},
    )


def _replies(scenario: str) -> Iterator[AIMessage]:
    """The model's replies in order; an exception raised here is the model call's error."""
    yield _tool_call(1)
    if scenario == "fails":
        n = 1
        while True:
            n += 1
            yield _tool_call(n)
    if scenario == "model_error":
        raise RuntimeError("model provider unavailable")
    yield AIMessage(
        content="It is sunny in Paris.",
        usage_metadata={"input_tokens": _IN2, "output_tokens": _OUT2, "total_tokens": _IN2 + _OUT2},
    )


def _tool(scenario: str) -> BaseTool:
    @tool
    def lookup(city: str) -> str:
        """Current weather for a city."""
        if scenario == "tool_raises":
            raise RuntimeError("weather service unavailable")
        return f"sunny in {city}"

    return lookup


def build_graph(scenario: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The scenario's graph: ``agent`` (model) -> ``tools`` -> ``agent`` ... until a plain answer."""
    lookup = _tool(scenario)
    model = ScriptedChatModel(messages=_replies(scenario)).bind_tools([lookup])

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(name=GRAPH_NAME)


def _undo_openllmetry() -> None:
    """Put back what OpenLLMetry's LangChain instrumentor wrapped (its own uninstrument does not)."""
    for module_name, owner_name, attribute in _OPENLLMETRY_PATCHES:
        module = sys.modules.get(module_name)
        owner = getattr(module, owner_name) if module is not None and owner_name else module
        wrapper = vars(owner).get(attribute) if owner is not None else None
        if isinstance(wrapper, wrapt.FunctionWrapper):
            setattr(owner, attribute, wrapper.__wrapped__)


def instrument(instrumentor: Instrumentor) -> None:
    """Make ``instrumentor`` the one active LangChain instrumentor (to the routing switch)."""
    global _active
    if _active == instrumentor:
        return
    offline_environment()
    if _active is not None:
        _INSTRUMENTORS[_active]().uninstrument()
        if _active == "openllmetry":
            _undo_openllmetry()
        _active = None
    if instrumentor == "openllmetry":
        LangchainInstrumentor().instrument(
            tracer_provider=hub, meter_provider=NoOpMeterProvider(), logger_provider=NoOpLoggerProvider()
        )
    else:
        LangChainInstrumentor().instrument(tracer_provider=hub)
    _active = instrumentor


def run(scenario: str, tracer_provider: TracerProvider, instrumentor: Instrumentor = "openinference") -> None:
    """Run the scenario once through ``instrumentor``; spans go to ``tracer_provider``; a failed run raises."""
    if scenario not in EXPECTED:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if instrumentor not in _INSTRUMENTORS:
        raise ValueError(f"unknown instrumentor {instrumentor!r}; expected one of {INSTRUMENTORS}")
    instrument(instrumentor)  # before the LangChain objects are built
    graph = build_graph(scenario)
    with route_spans_to(tracer_provider):
        graph.invoke(
            {"messages": [("user", "What is the weather in Paris?")]},
            {"recursion_limit": RECURSION_LIMIT},
        )
