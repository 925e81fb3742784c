"""The cost dashboard (`agent-cost`, "Agent cost and models"): spend by agent, model and execution,
the unit economics, cache use, and how the model calls behave (issue 24).

Built with the rest by `dashboards/build.py`.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    AGENT,
    AGENT_VAR,
    COMPLETED,
    FINISHED,
    UIDS,
    Grid,
    agg,
    dashboard,
    eq,
    heatmap,
    quantile,
    ranking,
    rate,
    ratio,
    re_,
    sel,
    target,
    timeseries,
)
from exporter import semconv as sc

COST = sc.COST.name
EXEC_COST = sc.EXECUTION_COST.name
LLM_TOKENS = sc.LLM_TOKENS.name
LLM_CALLS = sc.LLM_CALLS.name
MODEL_BY = f"{sc.LABEL_PROVIDER}, {sc.LABEL_MODEL}"


def per_hour(expr: str) -> str:
    return f"{expr} * 3600"


def cost() -> dict[str, Any]:
    m = (AGENT,)
    bad = re_(sc.LABEL_OUTCOME, sc.LlmOutcome.ERROR, sc.LlmOutcome.TIMEOUT, sc.LlmOutcome.RATE_LIMITED)
    g = Grid()
    g.row(8)
    g.add(12, timeseries(
        "Spend by agent",
        "US dollars per hour spent on model calls, per agent (agent_cost_usd_total: priced usage; "
        "tokens of models with no price are in the unpriced panel, never guessed).",
        [target(per_hour(agg(sc.LABEL_AGENT, rate(sel(COST, *m)))), "{{agent}}")],
        "currencyUSD", stack=True, min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Spend by model",
        "US dollars per hour per provider and model: which model the money goes to.",
        [target(per_hour(agg(MODEL_BY, rate(sel(COST, *m)))), "{{provider}} {{model}}")],
        "currencyUSD", stack=True, min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Cost per execution (p50 / p95)",
        "Median and 95th percentile spend of one execution (agent_execution_cost_usd). Exemplars open "
        "an expensive execution's trace.",
        [
            target(quantile(0.5, EXEC_COST, m, sc.LABEL_AGENT), "{{agent}} p50"),
            target(quantile(0.95, EXEC_COST, m, sc.LABEL_AGENT), "{{agent}} p95", "B", exemplar=True),
        ],
        "currencyUSD", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Cost per completed task",
        "Spend ÷ completed executions, per agent: the unit economics (failed and cancelled executions "
        "cost money too, and are paid for by the completed ones).",
        [target(f"{agg(sc.LABEL_AGENT, rate(sel(COST, *m)))}\n/\n"
                f"({agg(sc.LABEL_AGENT, rate(sel(FINISHED, *m, COMPLETED)))} > 0)", "{{agent}}")],
        "currencyUSD", min_=0,
    ))  # fmt: skip
    g.row(8)
    cache_read = eq(sc.LABEL_TYPE, sc.LlmTokenType.CACHE_READ)
    inputs = eq(sc.LABEL_TYPE, sc.LlmTokenType.INPUT)
    g.add(12, timeseries(
        "Cache-read share of input tokens",
        "cache_read ÷ input tokens per model (input counts the cached tokens): a falling share makes "
        "the same work cost more.",
        [target(ratio(sel(LLM_TOKENS, *m, cache_read), sel(LLM_TOKENS, *m, inputs), MODEL_BY),
                "{{provider}} {{model}}")],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Tokens by model and type",
        "Model tokens per minute, by model and type (cache_read and cache_write are parts of input, "
        "reasoning of output).",
        [target(f"{agg(f'{sc.LABEL_MODEL}, {sc.LABEL_TYPE}', rate(sel(LLM_TOKENS, *m)))} * 60",
                "{{model}} {{type}}")],
        "short", min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Model-call latency p95 by model",
        "95th percentile latency of one model call (step.llm_call(), framework model-call spans).",
        [target(quantile(0.95, sc.LLM_CALL_DURATION.name, m, MODEL_BY), "{{provider}} {{model}}", exemplar=True)],
        "s", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Model-call error and rate-limit ratio by model",
        "Share of each model's calls that ended in error, timeout or rate_limited, by outcome. "
        "Above 10 % for an hour, AgentLLMErrorsHigh fires.",
        [target(f"{agg(f'{MODEL_BY}, {sc.LABEL_OUTCOME}', rate(sel(LLM_CALLS, *m, bad)))}\n"
                f"/ ignoring({sc.LABEL_OUTCOME}) group_left()\n"
                f"({agg(MODEL_BY, rate(sel(LLM_CALLS, *m)))} > 0)", "{{model}} {{outcome}}")],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(9)
    g.add(12, heatmap(
        "Most expensive executions",
        "Executions per cost bucket over time; the exemplars (dots) open the trace of an execution in "
        "Jaeger, the costliest at the top.",
        f"{agg('le', rate(sel(EXEC_COST + '_bucket', *m)))}",
        "currencyUSD",
    ))  # fmt: skip
    g.add(6, ranking(
        "Spend by version",
        "US dollars per hour per agent version, averaged over the range (agent_version_cost_usd_total): "
        "did v2 cost more than v1?",
        per_hour(agg(f"{sc.LABEL_AGENT}, {sc.LABEL_VERSION}", rate(sel(sc.VERSION_COST.name, *m)))),
        "{{agent}} {{version}}", "currencyUSD", min_=0,
    ))  # fmt: skip
    g.add(6, ranking(
        "Unpriced tokens by model",
        "Tokens per minute of models with no known price (agent_llm_unpriced_tokens_total): add them "
        "with configure(prices=...) or name the model in record_usage().",
        f"{agg(MODEL_BY, rate(sel(sc.LLM_UNPRICED_TOKENS.name, *m)))} * 60",
        "{{provider}} {{model}}", "short", min_=0,
    ))  # fmt: skip
    return dashboard(
        UIDS["cost"],
        "What each agent costs: spend by agent, model and version, cost per execution and per completed task, "
        "cache use, and the model calls' latency and errors.",
        g.panels,
        [AGENT_VAR],
    )



