"""Issue 24: model usage, prices and cost in the native API (metrics, spans, configuration, bad input)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.trace import SpanKind, StatusCode

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.errors import llm_outcome_of
from exporter.pricing import Prices, parse_overrides


@pytest.mark.parametrize(
    ("model", "provider", "usage"),
    [
        ("gpt-4o", "openai", (12_000, 800, 4_000, 0)),
        ("gpt-4o", None, (10_000, 1_000, 0, 2_000)),  # no cache-write rate: charged as input
        ("gpt-4o-mini", None, (1_234, 567, 89, 0)),
        ("claude-sonnet-4-5", "anthropic", (2_000, 500, 1_000, 500)),
        ("claude-sonnet-4-5", None, (300_000, 1_000, 100_000, 50_000)),  # over the 200k tier
        ("claude-sonnet-4-5", None, (200_000, 10, 0, 0)),  # exactly at the tier: base rates
        ("claude-haiku-4-5", None, (50_000, 5_000, 20_000, 10_000)),
        ("gemini-2.5-flash", "gcp.gemini", (9_000, 3_000, 1_000, 0)),  # OTel's provider name
    ],
)
def test_cost_matches_genai_prices_own_calculation(model, provider, usage):
    """The cached float rates give what genai-prices' Decimal calc_price() gives, tiers included."""
    tin, tout, cr, cw = usage
    price = Prices().price(provider, model)
    assert price is not None
    ours = price.cost(tin, tout, cr, cw)
    pid = {"gcp.gemini": "google"}.get(provider or "", provider)
    theirs = calc_price(Usage(input_tokens=tin, output_tokens=tout, cache_read_tokens=cr, cache_write_tokens=cw),
                        model, provider_id=pid).total_price  # fmt: skip
    assert Decimal(repr(ours)) == pytest.approx(theirs, rel=Decimal("1e-12"))


def test_unknown_models_and_providers_have_no_price():
    """No model, a model no one prices, a provider genai-prices does not know: None (unpriced), cached."""
    prices = Prices()
    assert prices.price(None, None) is None
    assert prices.price(None, "mystery-7b") is None
    assert prices.price("my-proxy", "gpt-4o") is None  # never guessed from another provider
    assert prices.price(None, "gpt-4o") is not None and prices.price(None, "gpt-4o").provider == "openai"
    assert prices.price(None, "mystery-7b") is None  # from the cache now


def test_overrides_win_and_are_checked():
    """configure(prices=) adds or overrides per million tokens; bad entries are a ValueError at once."""
    prices = Prices(parse_overrides({"gpt-4o": {"input": 1, "output": 2}}))
    assert prices.price("openai", "gpt-4o").cost(1_000_000, 1_000_000, 500_000, 0) == pytest.approx(3.0)
    for bad in (
        {"m": {"input": 1}},  # no output
        {"m": {"input": 1, "output": -1}},
        {"m": {"input": 1, "output": 2, "cached": 1}},
        {"m": {"input": True, "output": 2}},
        {"": {"input": 1, "output": 2}},
        {"m": 3},
    ):
        with pytest.raises(ValueError):
            exporter.configure(metrics_port=None, prices=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        exporter.configure(metrics_port=None, prices="cheap")  # type: ignore[arg-type]


def test_llm_call_span_follows_the_genai_conventions():
    """`chat {model}`, CLIENT, child of the step, with model, provider, usage with its cache parts and cost."""
    with testing.capture() as cap:
        with exporter.execution("invoice") as run, run.step("Extract") as step:
            with step.llm_call("claude-sonnet-4-5") as call:
                call.record_usage(2_000, 500, cache_read_tokens=1_000, cache_write_tokens=500, reasoning_tokens=100,
                                  model="claude-sonnet-4-5-20250929")  # fmt: skip
        spans = {s.name: s for s in cap.spans()}
    chat = spans["chat claude-sonnet-4-5"]
    assert chat.kind == SpanKind.CLIENT and chat.parent.span_id == spans["Extract"].context.span_id
    cost = (500 * 3.0 + 1_000 * 0.30 + 500 * 3.75 + 500 * 15.0) / 1e6
    assert dict(chat.attributes) == {
        sc.ATTR_GEN_AI_OPERATION_NAME: "chat",
        sc.ATTR_GEN_AI_REQUEST_MODEL: "claude-sonnet-4-5",
        sc.ATTR_GEN_AI_RESPONSE_MODEL: "claude-sonnet-4-5-20250929",
        sc.ATTR_GEN_AI_PROVIDER_NAME: "anthropic",
        sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: 2_000,
        sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: 500,
        sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS: 1_000,
        sc.ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS: 500,
        sc.ATTR_GEN_AI_USAGE_REASONING_TOKENS: 100,
        sc.ATTR_TASK_COST_USD: pytest.approx(cost),
    }
    execution = spans["invoke_workflow invoice"]
    assert execution.attributes[sc.ATTR_TASK_COST_USD] == pytest.approx(cost)
    assert execution.attributes[sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS] == 1_000
    # The step carries its tokens; its spend is its model calls' (not repeated on every step span).
    assert spans["Extract"].attributes[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] == 2_000
    assert sc.ATTR_TASK_COST_USD not in spans["Extract"].attributes


async def test_async_llm_call_and_a_failed_call():
    """`async with step.llm_call()` works; a raising call is ERROR, counted by outcome, and the error passes."""
    with testing.capture() as cap:
        async with exporter.execution("a") as run, run.step("s") as step:
            async with step.llm_call("gpt-4o") as call:
                await asyncio.sleep(0)
                call.record_usage(100, 10)
            with pytest.raises(RuntimeError):
                async with step.llm_call("gpt-4o"):
                    raise RuntimeError("upstream 500")
        assert cap.value(sc.LLM_CALLS.name, agent="a", provider="openai", model="gpt-4o", outcome="success") == 1
        assert cap.value(sc.LLM_CALLS.name, agent="a", provider="openai", model="gpt-4o", outcome="error") == 1
        failed = [s for s in cap.spans() if s.name == "chat gpt-4o" and s.status.status_code == StatusCode.ERROR]
        assert len(failed) == 1 and failed[0].attributes[sc.ATTR_ERROR_TYPE] == "RuntimeError"


class _Status429(Exception):
    def __init__(self) -> None:
        super().__init__("request failed")
        self.status = 429


class RateLimitError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, "success"),
        (_Status429(), "rate_limited"),
        (RateLimitError("x"), "rate_limited"),
        (RuntimeError("Error code: 429 - Too Many Requests"), "rate_limited"),
        (RuntimeError("rate limit reached for gpt-4o"), "rate_limited"),
        (TimeoutError(), "timeout"),
        (type("APITimeoutError", (Exception,), {})(), "timeout"),
        (ValueError("bad request"), "error"),
    ],
)
def test_llm_outcome_of(exc, outcome):
    """A 429 or rate limit (type, status code or message) is rate_limited; a timeout, timeout; else error."""
    assert llm_outcome_of(exc).value == outcome


def test_prices_off_counts_tokens_and_no_cost():
    """prices=False: tokens by model still counted; no cost, no unpriced series, no cost attribute."""
    with testing.capture(prices=False) as cap:
        with exporter.execution("a") as run, run.step("s") as step:
            step.record_usage(100, 10, model="gpt-4o")
        assert cap.value(sc.LLM_TOKENS.name, agent="a", provider="unknown", model="gpt-4o", type="input") == 100
        assert cap.total(sc.COST.name) == 0 and cap.total(sc.LLM_UNPRICED_TOKENS.name) == 0
        assert cap.total(sc.EXECUTION_COST.name + "_count") == 0
        assert all(sc.ATTR_TASK_COST_USD not in (s.attributes or {}) for s in cap.spans())


def test_usage_without_a_model_is_unpriced_and_todays_calls_still_work():
    """record_usage(in, out) as before: agent_tokens_total as before, and the tokens counted unpriced."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as step:
            step.record_usage(100, 10)
            step.record_usage(input_tokens=5)
        assert cap.value(sc.TOKENS.name, agent="a", step="s", type="input") == 105
        assert cap.value(sc.LLM_UNPRICED_TOKENS.name, agent="a", provider="unknown", model="unknown") == 115
        execution = [s for s in cap.spans() if s.name == "invoke_workflow a"][0]
        assert sc.ATTR_TASK_COST_USD not in execution.attributes  # unknown, not $0
        assert execution.attributes[sc.ATTR_TASK_UNPRICED_TOKENS] == 115
        assert cap.total(sc.EXECUTION_COST.name + "_count") == 0


def test_an_execution_without_model_usage_costs_zero():
    """No model usage at all: the execution is observed at $0."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s"):
            pass
        assert cap.value(sc.EXECUTION_COST.name + "_count", agent="a", trigger="manual") == 1
        assert cap.value(sc.EXECUTION_COST.name + "_sum", agent="a", trigger="manual") == 0


def test_anthropic_style_usage_is_corrected_and_counted():
    """Cache parts above the input (input given without the cache) are added to it, with a warning and a drop."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as step:
            step.record_usage(500, 50, cache_read_tokens=1_000, cache_write_tokens=500, reasoning_tokens=80,
                              model="claude-sonnet-4-5")  # fmt: skip
        labels = {"agent": "a", "provider": "anthropic", "model": "claude-sonnet-4-5"}
        assert cap.value(sc.LLM_TOKENS.name, type="input", **labels) == 2_000
        assert cap.value(sc.LLM_TOKENS.name, type="output", **labels) == 130
        assert cap.value(sc.EXPORTER_DROPPED.name, reason="invalid_usage") == 2
        cost = (500 * 3.0 + 1_000 * 0.30 + 500 * 3.75 + 130 * 15.0) / 1e6
        assert cap.value(sc.COST.name, **labels) == pytest.approx(cost)


@pytest.mark.parametrize("bad", [-1, "many", float("nan"), True, object()])
def test_bad_usage_never_raises(bad):
    """Hostile token counts, models and providers: counted and dropped, never raised into the agent."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as step:
            step.record_usage(10, 1, cache_read_tokens=bad, model=bad, provider=bad)
            with step.llm_call(bad, provider=bad) as call:
                call.record_usage(bad, bad, reasoning_tokens=bad)
        assert cap.total(sc.EXPORTER_DROPPED.name) >= 1
        assert cap.total(sc.EXPORTER_DROPPED.name, reason="internal_error") == 0


def test_cost_crosses_suspend_and_resume():
    """A suspended execution's spend so far goes in its carrier; the resumed part's span ends with the total."""
    with testing.capture() as cap:
        with exporter.execution("a") as run:
            with run.step("one") as step:
                step.record_usage(1_000_000, 0, model="gpt-4o")  # $2.50
            carrier = run.suspend()
        assert carrier["cost_usd"] == pytest.approx(2.5)
        resumed = exporter.resume_execution(carrier)
        with resumed, resumed.step("two") as step:
            step.record_usage(0, 100_000, model="gpt-4o")  # $1.00
        assert cap.value(sc.EXECUTION_COST.name + "_sum", agent="a", trigger="manual") == pytest.approx(3.5)
        ends = [s for s in cap.spans() if s.name == "invoke_workflow a"]
        assert ends[-1].attributes[sc.ATTR_TASK_COST_USD] == pytest.approx(3.5)


def test_daily_cost_objective_exported_only_when_set():
    """objectives={"invoice": {"daily_cost_usd": 50}} exports it for that agent; no default budget elsewhere."""
    with testing.capture(objectives={"invoice": {"daily_cost_usd": 50}}) as cap:
        with exporter.execution("other"):
            pass
        assert cap.value(sc.OBJECTIVE.name, agent="invoice", objective="daily_cost_usd") == 50
        assert cap.total(sc.OBJECTIVE.name, agent="other", objective="daily_cost_usd") == 0
    for bad in (0, -5, "50", True):
        with pytest.raises(ValueError):
            exporter.configure(metrics_port=None, objectives={"x": {"daily_cost_usd": bad}})


def test_the_usage_path_increments_through_the_value_holder_and_the_registry_sees_it() -> None:
    """On this prometheus_client the usage path uses the counter's value holder (its fast path); what it
    adds is what the public API reads, and an object without one gets its own inc()."""
    from prometheus_client import CollectorRegistry, Counter

    from exporter.pipeline.recorder import value_holder

    reg = CollectorRegistry()
    child = Counter("probe", "probe", ["a"], registry=reg).labels("x")
    holder = value_holder(child)
    assert holder is not child  # the fast path is in use on the installed version
    holder.inc(3)
    child.inc(2)
    assert reg.get_sample_value("probe_total", {"a": "x"}) == 5

    class _NoHolder:
        def inc(self, amount: float = 1) -> None: ...

    plain = _NoHolder()
    assert value_holder(plain) is plain
