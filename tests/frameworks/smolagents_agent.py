"""smolagents with a scripted model, traced by the OpenInference instrumentor: the shapes' recorder.

Why: smolagents' spans carry no agent-name attribute (its root is `{agent}.run`), and a tool that
raises leaves its `Step N` span ERROR while the run recovers (the error goes back to the model, a
later step answers, the root is OK): the mapping must count that run completed. smolagents is not
in the `frameworks` extra; this module only records `shapes/smolagents_*.json`
(`python -m tests.frameworks.smolagents_agent`, with `smolagents` and
`openinference-instrumentation-smolagents` importable), which the suite then maps.

Scenarios: `ok` (the tool, then `final_answer`); `tool_raises` (the tool raises, the model then
calls `final_answer`: a recovered error). Both use FIRST_CALL_TOKENS then SECOND_CALL_TOKENS.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from typing import Any

from opentelemetry.trace import TracerProvider

from tests.frameworks import FIRST_CALL_TOKENS, SECOND_CALL_TOKENS
from tests.frameworks.routing import route_spans_to

AGENT_NAME = "weather"
SCENARIOS = ("ok", "tool_raises")
_instrumented = False


def _agent(scenario: str) -> Any:
    from smolagents import ToolCallingAgent, tool

    @tool
    def lookup(city: str) -> str:
        """Look the weather up.

        Args:
            city: the city.
        """
        if scenario == "tool_raises":
            raise RuntimeError("weather service down")
        return f"sunny in {city}"

    return ToolCallingAgent(
        tools=[lookup], model=_scripted_model()(model_id="scripted-model"), name=AGENT_NAME, max_steps=4
    )


def _scripted_model() -> Any:
    """A model that calls the tool, then `final_answer`. The instrumentor wraps `generate` of the model
    classes `smolagents` exports when it instruments: the class is exported there first."""
    import smolagents
    from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole, Model
    from smolagents.monitoring import TokenUsage

    if hasattr(smolagents, "ScriptedModel"):
        return smolagents.ScriptedModel

    class ScriptedModel(Model):
        def generate(self, messages: list[ChatMessage], *args: Any, **kwargs: Any) -> ChatMessage:
            self.calls = getattr(self, "calls", 0) + 1
            first = self.calls == 1
            name, arguments = ("lookup", {"city": "Paris"}) if first else ("final_answer", {"answer": "sunny"})
            call = ChatMessageToolCall(
                id=f"call_{self.calls}", type="function",
                function=ChatMessageToolCallFunction(name=name, arguments=arguments),
            )  # fmt: skip
            tokens = FIRST_CALL_TOKENS if first else SECOND_CALL_TOKENS
            return ChatMessage(
                role=MessageRole.ASSISTANT, content="", tool_calls=[call], token_usage=TokenUsage(*tokens)
            )

    smolagents.ScriptedModel = ScriptedModel  # type: ignore[attr-defined]
    return ScriptedModel


def run(scenario: str, tracer_provider: TracerProvider) -> Any:
    global _instrumented
    from openinference.instrumentation.smolagents import SmolagentsInstrumentor

    from tests.frameworks.routing import hub

    if not _instrumented:
        _scripted_model()
        SmolagentsInstrumentor().instrument(tracer_provider=hub)
        _instrumented = True
    agent = _agent(scenario)
    with route_spans_to(tracer_provider):
        return agent.run("weather in Paris?")


def main() -> int:
    from tests.frameworks.dump import SHAPES, capture, shape

    versions = {
        d: importlib.metadata.version(d)
        for d in ("smolagents", "openinference-instrumentation-smolagents", "opentelemetry-sdk")
    }
    for scenario in SCENARIOS:
        result = capture(lambda provider, s=scenario: run(s, provider))
        data = {"case": "smolagents", "scenario": scenario, "versions": versions, **shape(result)}
        path = SHAPES / f"smolagents_{scenario}.json"
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"{path.name}: {len(data['spans'])} spans, raised {data['raised']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
