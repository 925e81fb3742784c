"""Human-in-the-loop runs of the three frameworks, offline: a run that stops for approval, then its resume.

Why: a framework run that ends waiting for a human (LangGraph `interrupt()`, an OpenAI Agents SDK
tool with `needs_approval`, a Pydantic AI deferred tool) must be counted as one execution that
waits, not as a finished one; these are the real frameworks' waits, with scripted models. Each
`start_*` runs until the wait and returns what the resume needs; each `resume_*` continues it.
The caller wraps each in `exporter.task(trigger=, task_id=)`, as the user's code does.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from opentelemetry.trace import TracerProvider

from tests.frameworks.langgraph_agent import Instrumentor, instrument
from tests.frameworks.routing import route_spans_to

__all__ = ["GRAPH_NAME", "langgraph_resume", "langgraph_start"]

GRAPH_NAME = "invoices"  # the agent label the graph's executions get


class _Invoice(TypedDict, total=False):
    email: str
    route: str
    approved: bool
    done: str


def _graph(saver: InMemorySaver) -> Any:
    """`route` -> `approve` (interrupt: a human approves the payment) -> `crm`."""

    def route(state: _Invoice) -> _Invoice:
        return {"route": "invoice"}

    def approve(state: _Invoice) -> _Invoice:
        return {"approved": bool(interrupt({"question": "pay this invoice?"}))}

    def crm(state: _Invoice) -> _Invoice:
        return {"done": "paid" if state.get("approved") else "rejected"}

    g = StateGraph(_Invoice)
    g.add_node("route", route)
    g.add_node("approve", approve)
    g.add_node("crm", crm)
    g.add_edge(START, "route")
    g.add_edge("route", "approve")
    g.add_edge("approve", "crm")
    g.add_edge("crm", END)
    return g.compile(checkpointer=saver, name=GRAPH_NAME)


def _load(path: Path | None) -> InMemorySaver:
    """A checkpointer whose state another process wrote (`_save`): LangGraph's sqlite saver is not installed."""
    saver = InMemorySaver()
    if path is not None and path.exists():
        storage, writes, blobs = pickle.loads(path.read_bytes())
        saver.storage.update(storage)
        saver.writes.update(writes)
        saver.blobs.update(blobs)
    return saver


def _save(saver: InMemorySaver, path: Path | None) -> None:
    if path is not None:
        storage = {k: {ns: dict(v) for ns, v in d.items()} for k, d in saver.storage.items()}
        path.write_bytes(pickle.dumps((storage, dict(saver.writes), dict(saver.blobs))))


def langgraph_start(
    thread: str, tracer_provider: TracerProvider, instrumentor: Instrumentor, checkpoints: Path | None = None
) -> tuple[dict[str, Any], InMemorySaver]:
    """Run the graph on `thread` until it stops for approval; its state (with `__interrupt__`) and its checkpointer."""
    instrument(instrumentor)
    saver = _load(checkpoints)
    with route_spans_to(tracer_provider):
        out = _graph(saver).invoke({"email": "invoice #1"}, {"configurable": {"thread_id": thread}})
    _save(saver, checkpoints)
    return out, saver


def langgraph_resume(
    thread: str,
    tracer_provider: TracerProvider,
    instrumentor: Instrumentor,
    approve: bool = True,
    saver: InMemorySaver | None = None,
    checkpoints: Path | None = None,
) -> dict[str, Any]:
    """Resume `thread` with the human's answer (`Command(resume=approve)`): a new run, a new trace."""
    instrument(instrumentor)
    saver = saver if saver is not None else _load(checkpoints)
    with route_spans_to(tracer_provider):
        out: dict[str, Any] = _graph(saver).invoke(Command(resume=approve), {"configurable": {"thread_id": thread}})
    _save(saver, checkpoints)
    return out


# ------------------------------------------------------------------ OpenAI Agents SDK (needs_approval)

PAYER = "payer"  # the OpenAI Agents SDK agent whose tool needs approval


def _payer() -> Any:
    from agents import Agent, function_tool
    from agents.testing import ModelStep, assistant_message, function_call

    from tests.frameworks.openai_agents_agent import UsageScriptedModel, _usage

    @function_tool(needs_approval=True)
    def pay(amount: int) -> str:
        """Pay an invoice."""
        return f"paid {amount}"

    steps = [
        ModelStep(output=[function_call("pay", {"amount": 5}, call_id="call_1")], usage=_usage(50, 10)),
        ModelStep(output=[assistant_message("done")], usage=_usage(80, 20)),
    ]
    return Agent(name=PAYER, instructions="Pay invoices.", tools=[pay], model=UsageScriptedModel(steps))


def openai_start(tracer_provider: TracerProvider) -> tuple[Any, Any]:
    """Run the agent until its `pay` tool asks for approval: (agent, result with `interruptions`)."""
    from agents import Runner

    from tests.frameworks.openai_agents_agent import instrument as instrument_openai

    instrument_openai()
    agent = _payer()
    with route_spans_to(tracer_provider):
        result = Runner.run_sync(agent, "pay invoice #1")
    return agent, result


def openai_resume(tracer_provider: TracerProvider, agent: Any, result: Any, approve: bool) -> Any:
    """Approve (or reject) every pending call and run again from the state: the SDK continues the run."""
    from agents import Runner

    state = result.to_state()
    for item in result.interruptions:
        if approve:
            state.approve(item)
        else:
            state.reject(item)
    with route_spans_to(tracer_provider):
        return Runner.run_sync(agent, state)


# ------------------------------------------------------------------ Pydantic AI (deferred tool, requires_approval)


def _pydantic_payer(tracer_provider: TracerProvider) -> Any:
    from opentelemetry.metrics import NoOpMeterProvider
    from pydantic_ai import Agent, DeferredToolRequests
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.usage import RequestUsage

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(
                parts=[ToolCallPart("pay", {"amount": 5}, tool_call_id="call_1")],
                usage=RequestUsage(input_tokens=50, output_tokens=10),
            )
        return ModelResponse(parts=[TextPart("done")], usage=RequestUsage(input_tokens=80, output_tokens=20))

    agent: Any = Agent(
        FunctionModel(respond, model_name="scripted"), name=PAYER, output_type=[str, DeferredToolRequests]
    )
    agent.instrument = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())

    @agent.tool_plain(requires_approval=True)
    def pay(amount: int) -> str:
        """Pay an invoice."""
        return f"paid {amount}"

    return agent


def pydantic_start(tracer_provider: TracerProvider) -> Any:
    """Run until the `pay` call needs approval: the result whose output is `DeferredToolRequests`."""
    return _pydantic_payer(tracer_provider).run_sync("pay invoice #1")


def pydantic_resume(tracer_provider: TracerProvider, result: Any, approve: bool = True) -> Any:
    """Run again with the history and the human's answers (`deferred_tool_results=`)."""
    from pydantic_ai import DeferredToolResults

    answers = DeferredToolResults(approvals={c.tool_call_id: approve for c in result.output.approvals})
    agent = _pydantic_payer(tracer_provider)
    return agent.run_sync(message_history=result.all_messages(), deferred_tool_results=answers)


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.frameworks.hitl INSTRUMENTOR STORE_URL CHECKPOINTS TASK_ID`: resume the LangGraph
    wait in this process (another process parked it), print this process's counts as JSON."""
    import json
    import sys

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    import exporter
    from exporter import semconv as sc
    from exporter.testing import fresh_registry, metric_total

    instrumentor, store, checkpoints, task_id = (argv if argv is not None else sys.argv[1:])[:4]
    registry = fresh_registry()
    tp = SdkTracerProvider()
    exporter.configure(
        "hitl-resume", registry=registry, tracer_provider=tp, span_metrics=True, metrics_port=None,
        log_level="off", task_store=store,
    )  # fmt: skip
    with exporter.task(trigger="email", task_id=task_id):
        out = langgraph_resume(task_id, tp, instrumentor, checkpoints=Path(checkpoints))  # type: ignore[arg-type]
    names = {
        "started": sc.EXECUTIONS_STARTED.name,
        "completed": (sc.EXECUTIONS_FINISHED.name, {"status": "completed"}),
        "failed": (sc.EXECUTIONS_FINISHED.name, {"status": "failed"}),
        "pending": sc.EXECUTIONS_PENDING.name,
        "pending_observed": sc.EXECUTION_PENDING_DURATION.name + "_count",
        "steps": sc.STEPS.name,
    }
    counts = {}
    for key, spec in names.items():
        name, labels = spec if isinstance(spec, tuple) else (spec, {})
        counts[key] = metric_total(registry, name, **labels)
    exporter.shutdown()
    print(json.dumps({"done": out.get("done"), **counts}))


if __name__ == "__main__":
    main()
