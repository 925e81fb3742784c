# ruff: noqa: E501 - the expectation table reads best one shape per line
"""The span mapping: each framework's recorded span shapes become the expected events."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exporter import semconv as sc
from exporter.pipeline import events as ev
from exporter.spans.mapping import AGENT, LLM, NODE, OWN_SCOPE, TOOL, Native, agent_label, assemble, classify, summarize
from exporter.traces.export import SCOPE

SHAPES = Path(__file__).parent / "frameworks" / "shapes"

# shape -> (status, cause, steps by (name, status), tool calls by (tool, outcome), input tokens, output tokens)
EXPECTED: dict[str, tuple[str, str | None, dict[tuple[str, str], int], dict[tuple[str, str], int], int, int]] = {
    "pydantic_ai_ok": ("completed", None, {("chat scripted", "passed"): 2}, {("lookup", "success"): 1}, 130, 30),
    "pydantic_ai_tool_raises": ("failed", "tool_error", {("chat scripted", "passed"): 1}, {("lookup", "error"): 1}, 50, 10),
    "pydantic_ai_fails": ("failed", "validation_failure", {("chat scripted", "passed"): 3}, {("lookup", "success"): 1}, 210, 50),
    "pydantic_ai_model_error": (
        "failed", "error", {("chat scripted", "passed"): 1, ("chat scripted", "failed"): 1}, {("lookup", "success"): 1}, 50, 10,
    ),
    "openai_agents_ok": ("completed", None, {("response", "passed"): 2}, {("lookup", "success"): 1}, 130, 30),
    # A raising tool does not fail an OpenAI Agents run: the error goes back to the model.
    "openai_agents_tool_raises": ("completed", None, {("response", "passed"): 2}, {("lookup", "error"): 1}, 130, 30),
    # The root stays OK when the run failed: the failing turn says so.
    "openai_agents_fails": ("failed", "validation_failure", {("response", "passed"): 2}, {("lookup", "success"): 1}, 130, 30),
    "openai_agents_model_error": (
        "failed", "error", {("response", "passed"): 1, ("response", "failed"): 1}, {("lookup", "success"): 1}, 50, 10,
    ),
}
# smolagents (OpenInference): no agent-name attribute, the label is its root `weather.run` less `.run`.
# A raising tool leaves `Step 1` ERROR, `Step 2` answers and the root is OK: recovered, completed.
_SMOL_STEPS = {("ScriptedModel.generate", "passed"): 2}
EXPECTED |= {
    "smolagents_ok": ("completed", None, _SMOL_STEPS, {("lookup", "success"): 1, ("final_answer", "success"): 1}, 130, 30),
    "smolagents_tool_raises": ("completed", None, _SMOL_STEPS, {("lookup", "error"): 1, ("final_answer", "success"): 1}, 130, 30),
}
# The Vercel AI SDK (npm `ai` 7, mock model), `functionId: "weather"`: v7 GenAI spans and the legacy
# `ai.*` format map alike. A throwing tool goes back to the model, the run answers: completed.
for fmt in ("v7", "legacy"):
    EXPECTED |= {
        f"ai_sdk_{fmt}_ok": ("completed", None, {("chat scripted-model", "passed"): 2}, {("lookup", "success"): 1}, 130, 30),
        f"ai_sdk_{fmt}_tool_raises": ("completed", None, {("chat scripted-model", "passed"): 2}, {("lookup", "error"): 1}, 130, 30),
    }
for inst in ("openinference", "openllmetry"):
    EXPECTED |= {
        f"langgraph_{inst}_ok": (
            "completed", None, {("agent", "passed"): 2, ("tools", "passed"): 1}, {("lookup", "success"): 1}, 130, 30,
        ),
        f"langgraph_{inst}_tool_raises": (
            "failed", "tool_error", {("agent", "passed"): 1, ("tools", "failed"): 1}, {("lookup", "error"): 1}, 50, 10,
        ),
        f"langgraph_{inst}_fails": (
            "failed", "error", {("agent", "passed"): 2, ("tools", "passed"): 2}, {("lookup", "success"): 2}, 100, 20,
        ),
        f"langgraph_{inst}_model_error": (
            "failed", "error", {("agent", "passed"): 1, ("tools", "passed"): 1, ("agent", "failed"): 1},
            {("lookup", "success"): 1}, 50, 10,
        ),
    }  # fmt: skip


def load(name: str) -> list[Any]:
    spans = json.loads((SHAPES / f"{name}.json").read_text())["spans"]
    out = []
    for s in spans:
        status = s["status"]
        out.append(
            summarize(
                s["i"] + 1,
                None if s["parent"] is None else s["parent"] + 1,
                s["name"],
                s["attributes"],
                s["scope"],
                status["code"] == "ERROR",
                status.get("description"),
                [(e["name"], e.get("attributes", {})) for e in s.get("events", [])],
                s["i"] * 10,
                s["i"] * 10 + 5,
            )
        )
    return out


@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_recorded_shape_maps_to_one_execution_with_exact_counts(shape):
    """Each recorded framework run is one execution with the expected status, cause, steps, tools and tokens."""
    status, cause, steps, tools, tin, tout = EXPECTED[shape]
    out = assemble(load(shape), trace_id="t" * 32, exemplar=None)
    started = [e for e in out if isinstance(e, ev.ExecutionStarted)]
    (fin,) = [e for e in out if isinstance(e, ev.ExecutionFinished)]
    assert len(started) == 1 and fin.ref.agent == "weather"
    assert (fin.status, fin.cause) == (status, cause)
    assert Counter((e.step, e.status) for e in out if isinstance(e, ev.StepFinished)) == steps
    assert Counter((e.tool, e.outcome) for e in out if isinstance(e, ev.ToolCallFinished)) == tools
    tokens = [e for e in out if isinstance(e, ev.TokensUsed)]
    assert (sum(e.input for e in tokens), sum(e.output for e in tokens)) == (tin, tout)
    assert fin.ref.trigger == sc.UNKNOWN_LABEL_VALUE


def test_every_recorded_shape_has_an_expectation():
    """A new shape file needs its row in EXPECTED."""
    assert {p.stem for p in SHAPES.glob("*.json")} == set(EXPECTED)


def test_aggregated_agent_usage_is_not_counted_again():
    """Pydantic AI's agent span carries aggregated totals; only the chat spans' tokens count."""
    spans = load("pydantic_ai_ok")
    root = next(s for s in spans if s.parent_id is None)
    assert root.role == AGENT and (root.tokens_in, root.tokens_out) == (0, 0)


def test_framework_spans_under_a_native_execution_fill_it():
    """Spans started inside exporter.execution() add steps, tools and tokens to it; no second execution."""
    spans = load("pydantic_ai_ok")
    root = next(s for s in spans if s.parent_id is None)
    ref = ev.ExecutionRef("invoice", "email", "T-1")
    out = assemble(spans, trace_id=None, exemplar=None, natives={root.span_id: Native(ref, "Extract")})
    assert not [e for e in out if isinstance(e, ev.ExecutionStarted | ev.ExecutionFinished | ev.StepFinished)]
    assert {e.ref for e in out} == {ref}
    assert {e.step for e in out if isinstance(e, ev.TokensUsed)} == {"Extract"}
    assert [e.tool for e in out if isinstance(e, ev.ToolCallFinished)] == ["lookup"]


def test_task_trigger_and_id_come_from_the_task_helper_or_attributes():
    """exporter.task() (here: the `task` mapping) names trigger and task id; else the root's attributes."""
    spans = load("openai_agents_ok")
    root = next(s for s in spans if s.parent_id is None)
    out = assemble(spans, trace_id=None, exemplar=None, task={root.span_id: ("email", "T-9")})
    (fin,) = [e for e in out if isinstance(e, ev.ExecutionFinished)]
    assert (fin.ref.trigger, fin.ref.task_id) == ("email", "T-9")
    attrs = {sc.ATTR_GEN_AI_OPERATION_NAME: "invoke_agent", sc.ATTR_TASK_TRIGGER: "webhook", sc.ATTR_TASK_ID: "T-3"}
    one = summarize(1, None, "invoke_agent a", attrs, "some.sdk", False, None, [], 0, 10**9)
    (fin,) = [e for e in assemble([one], trace_id=None, exemplar=None) if isinstance(e, ev.ExecutionFinished)]
    assert (fin.ref.trigger, fin.ref.task_id, fin.runtime) == ("webhook", "T-3", 1.0)


def test_evaluation_events_are_evaluations():
    """gen_ai.evaluation.result events become evaluations and the execution's mean score."""
    attrs = {sc.ATTR_GEN_AI_OPERATION_NAME: "chat", sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: 3}
    evaluation = {sc.ATTR_EVALUATION_NAME: "accuracy", sc.ATTR_EVALUATION_SCORE_VALUE: 0.5,
                  sc.ATTR_EVALUATION_SCORE_LABEL: "fail"}  # fmt: skip
    root = summarize(1, None, "invoke_agent a", {sc.ATTR_GEN_AI_OPERATION_NAME: "invoke_agent"}, "x", False, None, [], 0, 9)
    chat = summarize(2, 1, "chat m", attrs, "x", False, None, [(sc.EVENT_EVALUATION, evaluation)], 1, 5)
    out = assemble([root, chat], trace_id=None, exemplar=None)
    (evaluated,) = [e for e in out if isinstance(e, ev.EvaluationRecorded)]
    assert (evaluated.step, evaluated.name, evaluated.result, evaluated.score) == ("chat m", "accuracy", "fail", 0.5)
    (fin,) = [e for e in out if isinstance(e, ev.ExecutionFinished)]
    assert fin.score == 0.5


def test_roles_and_the_own_scope():
    """Roles from GenAI operation names and OpenInference kinds; the library's own scope is its tracer's."""
    assert OWN_SCOPE == SCOPE
    assert classify("x", {sc.ATTR_GEN_AI_OPERATION_NAME: "execute_tool"}, "s") == TOOL
    assert classify("x", {"openinference.span.kind": "LLM"}, "s") == LLM
    assert classify("x", {"openinference.span.kind": "AGENT", "metadata": '{"langgraph_node": "a"}'}, "s") == NODE
    assert classify("x", {"openinference.span.kind": "LLM", "metadata": '{"langgraph_node": "a"}'}, "s") == LLM


def test_agent_label_without_an_agent_name_attribute():
    """No agent-name attribute: the span name less a GenAI operation prefix or `.run`; else `unknown`."""
    assert agent_label("invoke_agent mock-invoice-v1") == "mock-invoice-v1"  # AI SDK v7 without functionId
    assert agent_label("weather.run") == "weather"  # smolagents
    assert agent_label("invoices") == "invoices"  # a LangGraph graph's name (OpenInference)
    assert [agent_label(n) for n in ("ai.generateText", "invoke_agent ", ".run", "")] == ["unknown"] * 4


def _ai(i: int, parent: int | None, op: str, attrs: dict[str, object], error: bool = False) -> Any:
    return summarize(i, parent, op, {"ai.operationId": op, **attrs}, "ai", error, None, [], i * 10, i * 10 + 5)


@pytest.mark.parametrize("run", ["ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject"])
def test_ai_sdk_legacy_format_roles_and_usage_on_model_calls_only(run):
    """Each `ai.*` run is an execution, `<run>.doGenerate` / `.doStream` its model calls (their usage,
    AI SDK <= 4 names too), `ai.toolCall` its tools; the run span's totals are not counted again."""
    call = f"{run}.doStream" if "stream" in run else f"{run}.doGenerate"
    totals = {"ai.usage.inputTokens": 999, "ai.usage.outputTokens": 999}
    spans = [
        _ai(1, None, run, {"ai.telemetry.functionId": "billing", "ai.model.id": "m1", **totals}),
        _ai(2, 1, call, {"ai.model.id": "m1", "ai.usage.inputTokens": 5, "ai.usage.outputTokens": 2}),
        _ai(3, 2, "ai.toolCall", {"ai.toolCall.name": "lookup"}, error=True),
        _ai(4, 1, call, {"ai.model.id": "m1", "ai.usage.promptTokens": 7, "ai.usage.completionTokens": 3}),
        _ai(5, 1, "ai.embed", {"ai.usage.tokens": 50}),
    ]
    assert [s.role for s in spans] == [AGENT, LLM, TOOL, LLM, "other"]
    out = assemble(spans, trace_id=None, exemplar=None)
    (fin,) = [e for e in out if isinstance(e, ev.ExecutionFinished)]
    assert (fin.ref.agent, fin.status) == ("billing", "completed")  # the tool's error went back to the model
    tokens = [e for e in out if isinstance(e, ev.TokensUsed)]
    assert (sum(e.input for e in tokens), sum(e.output for e in tokens)) == (12, 5)
    assert {e.step for e in tokens} == {"chat m1"}
    assert [(e.tool, e.outcome) for e in out if isinstance(e, ev.ToolCallFinished)] == [("lookup", "error")]


def test_ai_sdk_agent_falls_back_to_the_model_and_task_comes_from_metadata_or_context():
    """No functionId: the model id names the agent (as v7's `invoke_agent {model}`); trigger and task id from
    `ai.telemetry.metadata.task.*` (AI SDK <= 6) or `ai.settings.context.task.*` (v7 runtime context)."""
    meta = _ai(1, None, "ai.generateText", {"ai.model.id": "m1", "ai.telemetry.metadata.task.trigger": "email",
                                            "ai.telemetry.metadata.task.id": "T-1"})  # fmt: skip
    ctx = _ai(1, None, "ai.streamText", {"ai.telemetry.functionId": "f", "ai.settings.context.task.trigger": "api",
                                         "ai.settings.context.task.id": 42})  # fmt: skip
    given = _ai(1, None, "ai.generateText", {"ai.telemetry.functionId": "f", "task.trigger": "timer",
                                             "ai.telemetry.metadata.task.trigger": "email"})  # fmt: skip
    refs = [assemble([s], trace_id=None, exemplar=None)[0].ref for s in (meta, ctx, given)]
    assert [(r.agent, r.trigger, r.task_id) for r in refs] == [
        ("m1", "email", "T-1"), ("f", "api", "42"), ("f", "timer", "0000000000000001"),
    ]  # fmt: skip


def test_an_errored_chain_the_run_went_on_from_is_recovered_the_last_one_fails():
    """Below an OK root, `Step 1` ERROR then `Step 2` OK: completed; the errored step last: failed."""
    kind = {"openinference.span.kind": "CHAIN"}
    root = summarize(1, None, "a.run", {"openinference.span.kind": "AGENT"}, "x", False, None, [], 0, 100)
    first = summarize(2, 1, "Step 1", kind, "x", True, None, [], 10, 20)
    second = summarize(3, 1, "Step 2", kind, "x", False, None, [], 30, 40)
    late = summarize(3, 1, "Step 2", kind, "x", False, None, [], 15, 40)  # began before step 1 ended
    for spans, status in (([root, first, second], "completed"), ([root, second, first._replace(start_ns=50, end_ns=60)], "failed"),
                          ([root, first, late], "failed")):  # fmt: skip
        (fin,) = [e for e in assemble(spans, trace_id=None, exemplar=None) if isinstance(e, ev.ExecutionFinished)]
        assert (fin.ref.agent, fin.status) == ("a", status)
