"""Pydantic AI with a scripted ``FunctionModel`` and Pydantic AI's own OpenTelemetry GenAI spans.

Why: Pydantic AI emits the GenAI conventions natively (``invoke_agent``, ``chat``, ``execute_tool``);
the span bridge reads them as they are. Instrumentation is set per agent
(``agent.instrument = InstrumentationSettings(tracer_provider=...)``), which gives the same spans as
``Agent.instrument_all()`` without touching process-wide state.
"""

from __future__ import annotations

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.usage import RequestUsage

from tests.frameworks import FIRST_CALL_TOKENS, SCENARIOS, SECOND_CALL_TOKENS, Expected

__all__ = ["AGENT_NAME", "EXPECTED", "MODEL_NAME", "TOOL_NAME", "run"]

AGENT_NAME = "weather"
MODEL_NAME = "scripted"
TOOL_NAME = "lookup"

_IN1, _OUT1 = FIRST_CALL_TOKENS
_IN2, _OUT2 = SECOND_CALL_TOKENS

EXPECTED: dict[str, Expected] = {
    "ok": Expected(None, 2, 1, 0, _IN1 + _IN2, _OUT1 + _OUT2),
    # A tool's exception is not sent back to the model: it fails the run.
    "tool_raises": Expected(RuntimeError, 1, 1, 1, _IN1, _OUT1),
    # The output validator rejects the answer; after one retry (retries=1) the run gives up.
    "fails": Expected(UnexpectedModelBehavior, 3, 1, 0, _IN1 + 2 * _IN2, _OUT1 + 2 * _OUT2),
    "model_error": Expected(RuntimeError, 2, 1, 0, _IN1, _OUT1),
}
assert set(EXPECTED) == set(SCENARIOS)


def _model(scenario: str) -> FunctionModel:
    """A model that asks for the tool once, then answers (or raises, for ``model_error``)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(
                parts=[ToolCallPart(TOOL_NAME, {"city": "Paris"}, tool_call_id="call_1")],
                usage=RequestUsage(input_tokens=_IN1, output_tokens=_OUT1),
            )
        if scenario == "model_error":
            raise RuntimeError("model provider unavailable")
        return ModelResponse(
            parts=[TextPart("It is sunny in Paris.")],
            usage=RequestUsage(input_tokens=_IN2, output_tokens=_OUT2),
        )

    return FunctionModel(respond, model_name=MODEL_NAME)


def build_agent(scenario: str, tracer_provider: TracerProvider) -> Agent[None, str]:
    """The scenario's agent, instrumented to ``tracer_provider`` (no metrics, no global state)."""
    agent: Agent[None, str] = Agent(_model(scenario), name=AGENT_NAME, retries=1)
    agent.instrument = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())

    @agent.tool_plain
    def lookup(city: str) -> str:
        """Current weather for a city."""
        if scenario == "tool_raises":
            raise RuntimeError("weather service unavailable")
        return f"sunny in {city}"

    if scenario == "fails":

        @agent.output_validator
        def never_good_enough(output: str) -> str:
            raise ModelRetry("answer in Celsius")

    return agent


def run(scenario: str, tracer_provider: TracerProvider) -> None:
    """Run the scenario once; its spans go to ``tracer_provider``; a failed run raises."""
    if scenario not in EXPECTED:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    build_agent(scenario, tracer_provider).run_sync("What is the weather in Paris?")
