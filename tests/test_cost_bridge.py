"""Issue 24, acceptance 2: the same exact cost from framework spans (span bridge) and through ingest.

Model-call spans are read for model, provider and the cache and reasoning parts, in the GenAI
names (current and older) and OpenInference's; agent spans' run totals (`gen_ai.aggregated_usage.*`,
an OpenInference AGENT span's own token counts) are never added. Expected costs are hand
computations from the published prices (USD per million tokens): gpt-4o $2.50 / $1.25 cached /
$10 out; claude-sonnet-4-5 $3 / $0.30 cache read / $3.75 cache write / $15 out.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.ingest.service import IngestService, IngestSettings
from tests import otlp_build as ob
from tests.frameworks import require_frameworks

OP = sc.ATTR_GEN_AI_OPERATION_NAME
# gpt-4o: 12 000 in (4 000 cached), 800 out, of which 300 reasoning (reasoning is part of output)
GPT4O = (8_000 * 2.50 + 4_000 * 1.25 + 800 * 10.0) / 1e6
# claude-sonnet-4-5: 2 000 in = 500 + 1 000 read + 500 written, 500 out
SONNET = (500 * 3.0 + 1_000 * 0.30 + 500 * 3.75 + 500 * 15.0) / 1e6

GENAI_GPT4O = {OP: "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
               "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 12_000,
               "gen_ai.usage.output_tokens": 800, "gen_ai.usage.cache_read.input_tokens": 4_000,
               "gen_ai.usage.reasoning.output_tokens": 300}  # fmt: skip
GENAI_SONNET_OLD = {OP: "chat", "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.system": "anthropic",
                    "gen_ai.usage.input_tokens": 2_000, "gen_ai.usage.output_tokens": 500,
                    "gen_ai.usage.cache_read.input_tokens": 1_000,
                    "gen_ai.usage.cache_creation.input_tokens": 500}  # fmt: skip
OI_SONNET = {"openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet-4-5", "llm.provider": "anthropic",
             "llm.token_count.prompt": 2_000, "llm.token_count.completion": 500,
             "llm.token_count.prompt_details.cache_read": 1_000,
             "llm.token_count.prompt_details.cache_write": 500}  # fmt: skip
# The run totals an agent span repeats: never to be counted again.
TOTALS = {"gen_ai.aggregated_usage.input_tokens": 14_000, "gen_ai.aggregated_usage.output_tokens": 1_300,
          "gen_ai.usage.input_tokens": 14_000, "gen_ai.usage.output_tokens": 1_300}  # fmt: skip


def _genai_run(tp: TracerProvider) -> None:
    """A GenAI-conventions run (Pydantic AI's shape): invoke_agent (with run totals) > chat, tool, chat."""
    tracer = tp.get_tracer("some.framework")
    with tracer.start_as_current_span("invoke_agent invoice", attributes={OP: "invoke_agent", **TOTALS}) as root:
        root.set_attribute(sc.ATTR_GEN_AI_AGENT_NAME, "invoice")
        with tracer.start_as_current_span("chat gpt-4o", attributes=GENAI_GPT4O):
            pass
        with tracer.start_as_current_span("execute_tool lookup", attributes={OP: "execute_tool",
                                                                             sc.ATTR_GEN_AI_TOOL_NAME: "lookup"}):
            pass  # fmt: skip
        with tracer.start_as_current_span("chat claude-sonnet-4-5", attributes=GENAI_SONNET_OLD):
            pass
        with tracer.start_as_current_span("chat gpt-4o", attributes=GENAI_GPT4O) as limited:
            limited.set_attribute(sc.ATTR_ERROR_TYPE, "RateLimitError")
            limited.set_status(Status(StatusCode.ERROR, "429"))


def _openinference_run(tp: TracerProvider) -> None:
    """An OpenInference run: AGENT (with its own token totals) > LLM."""
    tracer = tp.get_tracer("openinference.instrumentation.x")
    agent = {"openinference.span.kind": "AGENT", "agent.name": "invoice", "llm.token_count.prompt": 2_000,
             "llm.token_count.completion": 500}  # fmt: skip
    with tracer.start_as_current_span("invoice", attributes=agent):
        with tracer.start_as_current_span("response", attributes=OI_SONNET):
            pass


def test_bridge_prices_genai_and_openinference_model_calls_exactly():
    """GenAI (current and older names) and OpenInference model-call spans: exact cost; run totals not added."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        _genai_run(tp)
        _openinference_run(tp)
        by_model = {
            ("openai", "gpt-4o"): cap.value(sc.COST.name, agent="invoice", provider="openai", model="gpt-4o"),
            ("anthropic", "claude-sonnet-4-5"): cap.value(sc.COST.name, agent="invoice", provider="anthropic",
                                                          model="claude-sonnet-4-5"),  # fmt: skip
        }
        # the rate-limited call reported its usage too: it is charged
        assert by_model == {("openai", "gpt-4o"): pytest.approx(2 * GPT4O, rel=1e-12),
                            ("anthropic", "claude-sonnet-4-5"): pytest.approx(2 * SONNET, rel=1e-12)}  # fmt: skip
        assert cap.total(sc.COST.name) == pytest.approx(2 * GPT4O + 2 * SONNET, rel=1e-12)
        assert cap.value(sc.EXECUTION_COST.name + "_sum", agent="invoice", trigger="unknown") == pytest.approx(
            2 * GPT4O + 2 * SONNET, rel=1e-12
        )
        assert cap.value(sc.EXECUTION_COST.name + "_count", agent="invoice", trigger="unknown") == 2
        labels = {"agent": "invoice", "provider": "openai", "model": "gpt-4o"}
        assert cap.value(sc.LLM_TOKENS.name, type="input", **labels) == 24_000
        assert cap.value(sc.LLM_TOKENS.name, type="cache_read", **labels) == 8_000
        assert cap.value(sc.LLM_TOKENS.name, type="reasoning", **labels) == 600
        sonnet = {"agent": "invoice", "provider": "anthropic", "model": "claude-sonnet-4-5"}
        assert cap.value(sc.LLM_TOKENS.name, type="cache_write", **sonnet) == 1_000
        # tokens: model calls only, never the agent spans' totals
        assert cap.total(sc.LLM_TOKENS.name, type="input") == 2 * 12_000 + 2 * 2_000
        assert cap.value(sc.LLM_CALLS.name, outcome="success", **labels) == 1
        assert cap.value(sc.LLM_CALLS.name, outcome="rate_limited", **labels) == 1
        assert cap.value(sc.LLM_CALLS.name, outcome="success", **sonnet) == 2
        assert cap.total(sc.LLM_UNPRICED_TOKENS.name) == 0


def test_framework_spans_under_a_native_execution_are_priced_once():
    """A framework run inside exporter.execution(): its model calls are priced into the native agent, once."""
    tp = TracerProvider()
    with testing.capture(span_metrics=True, tracer_provider=tp) as cap:
        with exporter.execution("billing") as run, run.step("Extract"):
            _genai_run(tp)
        assert cap.total(sc.EXECUTIONS_STARTED.name) == 1
        assert cap.value(sc.COST.name, agent="billing", provider="openai", model="gpt-4o") == pytest.approx(
            2 * GPT4O, rel=1e-12
        )
        assert cap.total(sc.COST.name) == pytest.approx(2 * GPT4O + SONNET, rel=1e-12)


# ----------------------------------------------------------------------- real frameworks, scripted models

# The harness's scripted models answer with (50 in, 10 out) then (80 in, 20 out); priced by override.
RATES = {"input": 2.0, "output": 8.0}
RUN_COST = ((50 + 80) * 2.0 + (10 + 20) * 8.0) / 1e6  # 0.0005 per `ok` run


@pytest.mark.parametrize(
    ("case", "model"),
    [("pydantic_ai", "scripted"), ("openai_agents", "scripted-model"), ("langgraph_openllmetry", None)],
)
def test_real_framework_runs_are_priced_exactly(case: str, model: str | None) -> None:
    """Pydantic AI, the OpenAI Agents SDK and LangGraph (OpenLLMetry) `ok` runs: cost = tokens x override
    rates, once per run (the agent spans' totals not added); a model named `unknown` is counted unpriced."""
    require_frameworks()
    from tests.frameworks import langgraph_agent, openai_agents_agent, pydantic_ai_agent

    runs: dict[str, Any] = {
        "pydantic_ai": pydantic_ai_agent.run,
        "openai_agents": openai_agents_agent.run,
        "langgraph_openllmetry": lambda s, tp: langgraph_agent.run(s, tp, "openllmetry"),
    }
    tp = TracerProvider()
    prices = {m: RATES for m in ("scripted", "scripted-model")}
    with testing.capture(span_metrics=True, tracer_provider=tp, prices=prices) as cap:
        for _ in range(2):
            runs[case]("ok", tp)
        if model is None:  # OpenLLMetry's LangChain spans say gen_ai.request.model = "unknown"
            assert cap.total(sc.COST.name) == 0
            assert cap.total(sc.LLM_UNPRICED_TOKENS.name) == 2 * (50 + 80 + 10 + 20)
            assert cap.total(sc.EXECUTION_COST.name + "_count") == 0  # all unpriced: cost unknown
            return
        assert cap.total(sc.COST.name, model=model) == pytest.approx(2 * RUN_COST, rel=1e-12)
        assert cap.total(sc.EXECUTION_COST.name + "_count") == 2
        assert cap.total(sc.EXECUTION_COST.name + "_sum") == pytest.approx(2 * RUN_COST, rel=1e-12)
        assert cap.total(sc.LLM_TOKENS.name, model=model, type="input") == 2 * 130
        assert cap.total(sc.LLM_CALLS.name, model=model, outcome="success") == 4


# ----------------------------------------------------------------------- ingest (agents in other languages)


def test_ingest_prices_model_calls_exactly():
    """Spans from another language through `agent-exporter ingest`: the same cost, the run totals not added."""
    svc = IngestService(IngestSettings(port=0, metrics_port=None, grace=0.0, sweep_interval=3600.0),
                        registry=CollectorRegistry()).start()  # fmt: skip
    try:
        tid, root = ob.new_trace_id(), ob.new_span_id()
        spans = [
            ob.span(tid, "chat gpt-4o", GENAI_GPT4O, parent=root, seconds=0.5),
            ob.span(tid, "chat claude-sonnet-4-5", GENAI_SONNET_OLD, parent=root, seconds=0.5),
            ob.span(tid, "invoke_agent invoice", {OP: "invoke_agent", sc.ATTR_GEN_AI_AGENT_NAME: "invoice",
                                                  "task.trigger": "webhook", **TOTALS}, span_id=root),  # fmt: skip
        ]
        assert svc.port is not None
        status, _, _ = ob.post(svc.port, ob.request(spans).SerializeToString())
        assert status == 200
        svc.derive(everything=True)

        def v(name: str, **labels: str) -> float:
            return svc.registry.get_sample_value(name, {"agent": "invoice", **labels}) or 0.0

        assert v(sc.COST.name, provider="openai", model="gpt-4o") == pytest.approx(GPT4O, rel=1e-12)
        assert v(sc.COST.name, provider="anthropic", model="claude-sonnet-4-5") == pytest.approx(SONNET, rel=1e-12)
        assert v(sc.EXECUTION_COST.name + "_sum", trigger="webhook") == pytest.approx(GPT4O + SONNET, rel=1e-12)
        assert v(sc.LLM_TOKENS.name, provider="openai", model="gpt-4o", type="input") == 12_000
        assert v(sc.LLM_CALL_DURATION.name + "_count", provider="openai", model="gpt-4o") == 1
    finally:
        svc.stop(timeout=1.0)
