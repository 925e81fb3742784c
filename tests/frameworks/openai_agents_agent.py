"""The OpenAI Agents SDK with a scripted model, traced by the OpenInference instrumentor.

Why: the SDK has its own tracing (traces and spans of its own, exported to OpenAI by default);
OpenInference's instrumentor replaces that exporter with a processor that turns them into
OpenTelemetry spans. ``agents.testing.ScriptedModel`` makes no request and, with
``emit_traces=True``, records an empty model span (no model, no usage); ``UsageScriptedModel``
records a ``response`` span the way the SDK's default Responses model does, with the scripted usage.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner, function_tool
from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import ModelBehaviorError
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem
from agents.model_settings import ModelSettings
from agents.models.interface import ModelTracing
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.tool import Tool
from agents.tracing import SpanError, response_span
from agents.usage import Usage, model_usage_to_span_usage
from openai.types.responses import Response, ResponseUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel

from tests.frameworks import FIRST_CALL_TOKENS, SCENARIOS, SECOND_CALL_TOKENS, Expected
from tests.frameworks.routing import hub, offline_environment, route_spans_to

__all__ = ["AGENT_NAME", "EXPECTED", "MODEL_NAME", "TOOL_NAME", "UsageScriptedModel", "instrument", "run"]

AGENT_NAME = "weather"
MODEL_NAME = "scripted-model"
TOOL_NAME = "lookup"

_IN1, _OUT1 = FIRST_CALL_TOKENS
_IN2, _OUT2 = SECOND_CALL_TOKENS

EXPECTED: dict[str, Expected] = {
    "ok": Expected(None, 2, 1, 0, _IN1 + _IN2, _OUT1 + _OUT2),
    # The SDK's default failure_error_function sends the error to the model: the run succeeds.
    "tool_raises": Expected(None, 2, 1, 1, _IN1 + _IN2, _OUT1 + _OUT2),
    # The answer is not the JSON the output type needs.
    "fails": Expected(ModelBehaviorError, 2, 1, 0, _IN1 + _IN2, _OUT1 + _OUT2),
    "model_error": Expected(RuntimeError, 2, 1, 0, _IN1, _OUT1),
}
assert set(EXPECTED) == set(SCENARIOS)

_instrumented = False


class Forecast(BaseModel):
    """The structured answer the ``fails`` scenario asks for (and never gets)."""

    city: str
    celsius: int


class UsageScriptedModel(ScriptedModel):
    """``ScriptedModel`` that records a ``response`` span carrying the scripted usage."""

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        **kwargs: Any,
    ) -> ModelResponse:
        """The scripted step, inside a response span like the SDK's OpenAIResponsesModel makes."""
        with response_span(disabled=tracing.is_disabled()) as span:
            try:
                result = await super().get_response(
                    system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, **kwargs
                )
            except Exception as exc:
                span.set_error(SpanError(message="Error getting response", data={"error": str(exc)}))
                raise
            span.span_data.usage = model_usage_to_span_usage(result.usage)
            if tracing.include_data():  # as the SDK's model: no response (so no usage) without it
                span.span_data.response = _as_response(result)
                span.span_data.input = input
        return result


def _as_response(result: ModelResponse) -> Response:
    """The Responses API object the SDK's default model would have received for ``result``."""
    usage = result.usage
    return Response(
        id=result.response_id or "scripted-response",
        created_at=0,
        model=MODEL_NAME,
        object="response",
        output=list(result.output),
        tool_choice="auto",
        tools=[],
        parallel_tool_calls=False,
        status="completed",
        usage=ResponseUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        ),
    )


def _usage(input_tokens: int, output_tokens: int) -> Usage:
    return Usage(requests=1, input_tokens=input_tokens, output_tokens=output_tokens,
                 total_tokens=input_tokens + output_tokens)


def _steps(scenario: str) -> list[Any]:
    """Call the tool, then answer; ``fails`` answers with text that is not a Forecast."""
    first = ModelStep(
        output=[function_call(TOOL_NAME, {"city": "Paris"}, call_id="call_1")], usage=_usage(_IN1, _OUT1)
    )
    if scenario == "model_error":
        return [first, RuntimeError("model provider unavailable")]
    text = "not a forecast" if scenario == "fails" else "It is sunny in Paris."
    return [first, ModelStep(output=[assistant_message(text)], usage=_usage(_IN2, _OUT2))]


def instrument() -> None:
    """Instrument the SDK once per process, to the routing switch (replaces the OpenAI exporter)."""
    global _instrumented
    if not _instrumented:
        offline_environment()
        OpenAIAgentsInstrumentor().instrument(tracer_provider=hub)
        _instrumented = True


def build_agent(scenario: str) -> Agent[Any]:
    """The scenario's agent with its scripted model and one tool."""

    @function_tool
    def lookup(city: str) -> str:
        """Current weather for a city."""
        if scenario == "tool_raises":
            raise RuntimeError("weather service unavailable")
        return f"sunny in {city}"

    return Agent(
        name=AGENT_NAME,
        instructions="Answer weather questions.",
        tools=[lookup],
        model=UsageScriptedModel(_steps(scenario)),
        output_type=Forecast if scenario == "fails" else None,
    )


def run(scenario: str, tracer_provider: TracerProvider) -> None:
    """Run the scenario once; its spans go to ``tracer_provider``; a failed run raises."""
    if scenario not in EXPECTED:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    instrument()
    agent = build_agent(scenario)
    with route_spans_to(tracer_provider):
        Runner.run_sync(agent, "What is the weather in Paris?")
