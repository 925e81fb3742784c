"""Offline agent-framework harness: real frameworks, scripted models, spans to a provider you pass.

Why: the span bridge derives the library's ``agent_*`` metrics from other frameworks' spans. Those
spans are only worth mapping as the frameworks really emit them, so each module here runs one real
framework with a scripted model (no keys, no network) through its real instrumentation:

- ``pydantic_ai_agent``: Pydantic AI with ``FunctionModel`` and its own OpenTelemetry GenAI spans;
- ``openai_agents_agent``: the OpenAI Agents SDK with a ``ScriptedModel`` that reports usage, and the
  OpenInference instrumentor;
- ``langgraph_agent``: a LangGraph graph (model node + ``ToolNode``) with a fake chat model bound to
  the tool, through the OpenInference or the OpenLLMetry LangChain instrumentor.

Each exposes ``run(scenario, tracer_provider)`` and ``EXPECTED`` (what the scenario does: the
exception it lets escape, model calls, tool calls, tokens). The scenarios are the same everywhere:

- ``ok``: one tool call that succeeds, then a final answer (50+80 input and 10+20 output tokens);
- ``tool_raises``: the tool raises; the framework's default handling decides the run's fate;
- ``fails``: the framework itself rejects what the model does and the run fails (output validation,
  or LangGraph's recursion limit);
- ``model_error``: the second model call raises (a provider error) and the run fails.

A failing run raises exactly as it would in the host application (``EXPECTED[s].raises``).

Instrumentation is process-global (the OpenAI Agents SDK keeps one list of trace processors,
LangChain instrumentors patch ``BaseCallbackManager``). So each framework is instrumented once per
process, with a ``routing.SwitchTracerProvider`` in place of a real provider, and ``run()`` points it
at the caller's provider only while the run lasts (``routing.route_spans_to``). Outside a run the
instrumentation creates no-op spans: importing these modules, or running them, changes nothing for
the rest of the suite. The global tracer provider is never set. Pydantic AI needs no switch: its
settings are given per agent. The two LangChain instrumentors are never active together: choosing
the other one uninstruments the first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = [
    "INSTALL_HINT",
    "SCENARIOS",
    "Expected",
    "missing_modules",
    "require_frameworks",
]

SCENARIOS: tuple[str, ...] = ("ok", "tool_raises", "fails", "model_error")

INSTALL_HINT = "pip install -e '.[frameworks]'"

# Import names of the ``frameworks`` extra (pyproject.toml).
MODULES: tuple[str, ...] = (
    "pydantic_ai",
    "agents",
    "openinference.instrumentation.openai_agents",
    "langgraph",
    "langchain_core",
    "openinference.instrumentation.langchain",
    "opentelemetry.instrumentation.langchain",
)

# The scripted models' usage: the first call asks for the tool, the second answers.
FIRST_CALL_TOKENS = (50, 10)
SECOND_CALL_TOKENS = (80, 20)


@dataclass(frozen=True)
class Expected:
    """What one scenario does, for tests that count what the bridge derives from its spans."""

    raises: type[BaseException] | None  # what escapes run(); None: the run succeeds
    model_calls: int  # model requests made (successful or not)
    tool_calls: int  # tool executions
    tool_errors: int  # of which raised
    input_tokens: int  # reported by the successful model calls
    output_tokens: int


def missing_modules() -> list[str]:
    """Import names of the ``frameworks`` extra that are not installed here."""
    missing = []
    for name in MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def require_frameworks() -> None:
    """Fail under CI (the extra must be installed there), skip locally, when a framework is missing."""
    from tests.servers import missing  # here: `python -m tests.frameworks.dump` needs none of tests.servers

    absent = missing_modules()
    if absent:
        missing(f"agent frameworks not installed ({', '.join(absent)}): {INSTALL_HINT}")
