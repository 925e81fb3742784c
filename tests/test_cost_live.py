"""Issue 24, acceptance 1: the exact cost of a scripted workload, read back from a real Prometheus scrape.

Three models of genai-prices' snapshot (gpt-4o with cache reads; claude-sonnet-4-5 with cache reads
and writes, once above its 200k-token tier), one model priced by `configure(prices=)`, and one
model no price list knows (counted unpriced). Every expected value below is a hand computation
from the published prices (USD per million tokens), written out term by term — not one made by
the library's code:

- gpt-4o: $2.50 input, $1.25 cached input, $10 output;
- claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output; above 200k input
  tokens per request $6 / $0.60 / $7.50 / $22.50;
- my-model (override): $1 input, $0.10 cache read, $1.25 cache write, $3 output.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import exporter
from exporter import semconv as sc
from exporter.testing import fresh_registry
from tests.servers import PrometheusServer, free_port, require_binary

pytestmark = pytest.mark.servers

AGENT = "invoice"
ROUNDS = 2  # the workload runs twice: every expected value is twice one round's

OVERRIDE = {"my-model": {"input": 1.0, "output": 3.0, "cache_read": 0.1, "cache_write": 1.25}}

# One round, by hand (tokens x USD per million / 1e6):
# A: gpt-4o, 12 000 in of which 4 000 cached, 800 out  -> 8 000 x 2.50 + 4 000 x 1.25 + 800 x 10
GPT4O = (8_000 * 2.50 + 4_000 * 1.25 + 800 * 10.0) / 1e6  # 0.033
#    claude-sonnet-4-5, 2 000 in = 500 uncached + 1 000 read + 500 written, 500 out
SONNET_SMALL = (500 * 3.0 + 1_000 * 0.30 + 500 * 3.75 + 500 * 15.0) / 1e6  # 0.011175
# B: my-model, 100 000 in of which 50 000 cached, 10 000 out; plus mystery-7b 3 000 + 300 unpriced
MY_MODEL = (50_000 * 1.0 + 50_000 * 0.10 + 10_000 * 3.0) / 1e6  # 0.085
# C: mystery-7b alone, 1 000 + 100: unpriced, so the execution's cost is unknown (not observed)
# D: claude-sonnet-4-5, 250 000 in (over the 200k tier), 1 000 out -> every token at the tier's rate
SONNET_LARGE = (250_000 * 6.0 + 1_000 * 22.5) / 1e6  # 1.5225

EXECUTION_COSTS = {"A": GPT4O + SONNET_SMALL, "B": MY_MODEL, "D": SONNET_LARGE}


class RateLimited(Exception):
    status_code = 429


def workload() -> None:
    """One round: executions A-D of the module docstring."""
    with exporter.execution(AGENT, trigger="email") as run, run.step("Extract") as step:  # A
        with step.llm_call("gpt-4o") as call:
            call.record_usage(12_000, 800, cache_read_tokens=4_000)
        with pytest.raises(RateLimited), step.llm_call("gpt-4o"):
            raise RateLimited("slow down")
        with pytest.raises(TimeoutError), step.llm_call("gpt-4o"):
            raise TimeoutError("no answer in 30 s")
        step.record_usage(2_000, 500, model="claude-sonnet-4-5", cache_read_tokens=1_000, cache_write_tokens=500)
    with exporter.execution(AGENT, trigger="email") as run, run.step("Summarise") as step:  # B
        with step.llm_call("my-model", provider="acme") as call:
            call.record_usage(100_000, 10_000, cache_read_tokens=50_000)
        step.record_usage(3_000, 300, model="mystery-7b")
    with exporter.execution(AGENT, trigger="webhook") as run, run.step("Summarise") as step:  # C
        step.record_usage(1_000, 100, model="mystery-7b")
    with exporter.execution(AGENT, trigger="api") as run, run.step("Review") as step:  # D
        step.record_usage(250_000, 1_000, model="claude-sonnet-4-5", provider="anthropic")


@dataclass
class Live:
    prom: PrometheusServer
    start: float
    end: float


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    binary = require_binary("prometheus")
    port = free_port()
    exporter.reset()
    exporter.configure(
        "cost-live", metrics_port=port, metrics_addr="127.0.0.1", registry=fresh_registry(), log_level="off",
        agent_version="v1", prices=OVERRIDE,
    )  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    try:
        with PrometheusServer(config, tmp_path_factory.mktemp("cost-live"), binary=binary) as prom:
            up = f'up{{job="{sc.SCRAPE_JOB}"}}'
            prom.wait_for(lambda: prom.query_value(up) == 1, timeout=30)
            start = time.time()
            for _ in range(ROUNDS):
                workload()
                time.sleep(1.2)
            done = time.time()
            prom.wait_for(lambda: (prom.query_value(f"timestamp({up})") or 0) > done + 1, timeout=15)
            exporter.reset()
            yield Live(prom, start, time.time())
    finally:
        exporter.reset()


def _by(prom: PrometheusServer, expr: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    return {
        tuple(s["metric"].get(k, "") for k in labels): float(s["value"][1])
        for s in prom.query(f"sum by ({', '.join(labels)}) ({expr})")
    }


def _approx(d: dict[Any, float]) -> dict[Any, Any]:
    return {k: pytest.approx(v, rel=1e-12, abs=1e-12) for k, v in d.items()}


def test_cost_by_model_is_the_hand_computation(live: Live) -> None:
    """agent_cost_usd_total per provider and model equals the prices times the tokens, term by term."""
    got = _by(live.prom, sc.COST.name, ("provider", "model"))
    assert got == _approx({
        ("openai", "gpt-4o"): ROUNDS * GPT4O,
        ("anthropic", "claude-sonnet-4-5"): ROUNDS * (SONNET_SMALL + SONNET_LARGE),
        ("acme", "my-model"): ROUNDS * MY_MODEL,
    })  # fmt: skip
    assert ROUNDS * GPT4O == pytest.approx(0.066) and ROUNDS * MY_MODEL == pytest.approx(0.17)


def test_version_and_execution_cost(live: Live) -> None:
    """The per-version spend is the whole spend; each execution with priced usage is observed once, at its cost."""
    total = ROUNDS * (GPT4O + SONNET_SMALL + MY_MODEL + SONNET_LARGE)
    assert _by(live.prom, sc.VERSION_COST.name, ("version",)) == _approx({("v1",): total})
    sums = _by(live.prom, sc.EXECUTION_COST.name + "_sum", ("trigger",))
    counts = _by(live.prom, sc.EXECUTION_COST.name + "_count", ("trigger",))
    # C (webhook) used only an unpriced model: its cost is unknown, so it is not observed at all
    assert counts == {("email",): 2 * ROUNDS, ("api",): ROUNDS}
    assert sums == _approx({
        ("email",): ROUNDS * (EXECUTION_COSTS["A"] + EXECUTION_COSTS["B"]),
        ("api",): ROUNDS * EXECUTION_COSTS["D"],
    })  # fmt: skip
    # D's $1.52 sits between the 1.5 and 2.0 buckets
    le = {s["metric"]["le"]: float(s["value"][1]) for s in live.prom.query(
        f'sum by (le) ({sc.EXECUTION_COST.name}_bucket{{trigger="api"}})')}  # fmt: skip
    assert le["1.5"] == 0 and le["2.0"] == ROUNDS


def test_unpriced_tokens_are_counted_not_guessed(live: Live) -> None:
    """mystery-7b's tokens are in agent_llm_unpriced_tokens_total and in no cost series."""
    assert _by(live.prom, sc.LLM_UNPRICED_TOKENS.name, ("provider", "model")) == {
        ("unknown", "mystery-7b"): ROUNDS * (3_000 + 300 + 1_000 + 100)
    }
    assert not live.prom.query(f'{sc.COST.name}{{model="mystery-7b"}}')


def test_tokens_by_model_and_type(live: Live) -> None:
    """agent_llm_tokens_total has every type, the cache parts apart from (and included in) input."""
    got = _by(live.prom, sc.LLM_TOKENS.name, ("model", "type"))
    per_round = {
        ("gpt-4o", "input"): 12_000, ("gpt-4o", "output"): 800, ("gpt-4o", "cache_read"): 4_000,
        ("claude-sonnet-4-5", "input"): 2_000 + 250_000, ("claude-sonnet-4-5", "output"): 500 + 1_000,
        ("claude-sonnet-4-5", "cache_read"): 1_000, ("claude-sonnet-4-5", "cache_write"): 500,
        ("my-model", "input"): 100_000, ("my-model", "output"): 10_000, ("my-model", "cache_read"): 50_000,
        ("mystery-7b", "input"): 4_000, ("mystery-7b", "output"): 400,
    }  # fmt: skip
    assert got == {k: ROUNDS * v for k, v in per_round.items()}


def test_model_calls_by_outcome(live: Live) -> None:
    """llm_call() counts each call by outcome (a 429 is rate_limited, a TimeoutError a timeout) with its latency."""
    assert _by(live.prom, sc.LLM_CALLS.name, ("provider", "model", "outcome")) == {
        ("openai", "gpt-4o", "success"): ROUNDS,
        ("openai", "gpt-4o", "rate_limited"): ROUNDS,
        ("openai", "gpt-4o", "timeout"): ROUNDS,
        ("acme", "my-model", "success"): ROUNDS,
    }
    counts = _by(live.prom, sc.LLM_CALL_DURATION.name + "_count", ("model",))
    assert counts == {("gpt-4o",): 3 * ROUNDS, ("my-model",): ROUNDS}


def test_expensive_executions_link_their_trace(live: Live) -> None:
    """agent_execution_cost_usd carries trace exemplars: the most expensive execution is one click from its trace."""
    found = live.prom.query_exemplars(f'{sc.EXECUTION_COST.name}_bucket{{trigger="api"}}', live.start - 5, live.end)
    ids = {e["labels"].get(sc.EXEMPLAR_TRACE_ID) for series in found for e in series.get("exemplars", [])}
    assert ids and all(isinstance(i, str) and len(i) == 32 for i in ids)
