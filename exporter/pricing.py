"""What model usage costs, in US dollars: prices from `genai-prices`, overrides from `configure(prices=)`.

`genai-prices` (MIT) ships a snapshot of prices per provider and model; it is read offline (its
updater is never started here), through its public API only: `calc_price()` finds the model and
returns its `ModelPrice`, whose per-million rates (plain, or tiered by the request's input tokens)
are turned into floats once per (provider, model) and cached. Each call is then a few
multiplications on the agent's thread, no `Decimal`.

Token semantics (the OpenTelemetry GenAI conventions, OpenInference and OpenAI): `input` counts
every input token, the cache read and cache write parts included; `reasoning` is part of `output`.
The uncached input is `input - cache_read - cache_write`. A rate the price list does not have
(a model with no cache-write price) is the model's input rate, as `genai-prices` itself prices it.
Tiered prices apply per request: pass one model call's usage per `record_usage()` call.

A model with no price (unknown to the snapshot and not overridden, or no model named) is *unpriced*:
its tokens are counted in `agent_llm_unpriced_tokens_total`, never priced by a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

# `gen_ai.provider.name` values (OpenTelemetry GenAI conventions) whose genai-prices id differs.
PROVIDER_ALIASES: Mapping[str, str] = {
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "google_genai": "google",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
}
OVERRIDE_KEYS = ("input", "output", "cache_read", "cache_write")
_MAX_CACHE = 4096  # (provider, model) pairs remembered; a stream of new names is looked up, not stored


class Rates(NamedTuple):
    """USD per token (not per million): uncached input, output, cache read, cache write."""

    input: float
    output: float
    cache_read: float
    cache_write: float


class Price(NamedTuple):
    """A model's rates, and higher rates from a number of input tokens per request up (tiers)."""

    base: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()  # (input tokens above which, rates), ascending
    provider: str | None = None  # the provider the price list matched, when none was named

    def cost(self, input: int, output: int, cache_read: int, cache_write: int) -> float:
        rates = self.base
        if self.tiers:
            for start, higher in self.tiers:
                if input > start:
                    rates = higher
        rate_in, rate_out, rate_read, rate_write = rates  # one unpack: this runs on every priced usage
        return (input - cache_read - cache_write) * rate_in + cache_read * rate_read + cache_write * rate_write + (
            output * rate_out
        )


def parse_overrides(value: Mapping[str, Mapping[str, float]]) -> dict[str, Price]:
    """`configure(prices={model: {"input": .., "output": .., "cache_read": .., "cache_write": ..}})`,
    USD per million tokens, checked; ValueError names the first bad entry."""
    out: dict[str, Price] = {}
    for model, rates in value.items():
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"prices: a model name must be a non-empty string, got {model!r}")
        if not isinstance(rates, Mapping):
            raise ValueError(f"prices[{model!r}] must be a mapping of {OVERRIDE_KEYS} to USD per million tokens")
        unknown = set(rates) - set(OVERRIDE_KEYS)
        if unknown:
            raise ValueError(f"prices[{model!r}]: unknown key(s) {sorted(map(str, unknown))}; known: {OVERRIDE_KEYS}")
        for key in ("input", "output"):
            if key not in rates:
                raise ValueError(f"prices[{model!r}] needs {key!r} (USD per million tokens)")
        for key, v in rates.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 or v == float("inf"):
                raise ValueError(f"prices[{model!r}][{key!r}] must be a finite number >= 0, got {v!r}")
        per = {k: float(rates.get(k, rates["input"])) / 1e6 for k in OVERRIDE_KEYS}
        out[model.strip()] = Price(Rates(per["input"], per["output"], per["cache_read"], per["cache_write"]))
    return out


def _per_token(value: Any) -> tuple[float, tuple[tuple[int, float], ...]]:
    """A genai-prices rate (a Decimal, or TieredPrices) as USD per token, and its tiers."""
    if value is None:
        return -1.0, ()
    base = getattr(value, "base", None)
    if base is None:
        return float(value) / 1e6, ()
    return float(base) / 1e6, tuple((int(t.start), float(t.price) / 1e6) for t in value.tiers)


def price_from_model_price(model_price: Any, provider: str | None) -> Price | None:
    """A `Price` from genai-prices' `ModelPrice`; None when it has no input or output rate."""
    parts = [_per_token(getattr(model_price, k, None)) for k in ("input_mtok", "output_mtok", "cache_read_mtok",
                                                                   "cache_write_mtok")]  # fmt: skip
    (inp, inp_t), (out, out_t), (cr, cr_t), (cw, cw_t) = parts
    if inp < 0 or out < 0:
        return None

    def rates_at(start: int | None) -> Rates:
        def pick(base: float, tiers: tuple[tuple[int, float], ...], fallback: float) -> float:
            if base < 0:
                return fallback
            rate = base
            for s, r in tiers:
                if start is not None and start >= s:
                    rate = r
            return rate

        i = pick(inp, inp_t, 0.0)
        return Rates(i, pick(out, out_t, 0.0), pick(cr, cr_t, i), pick(cw, cw_t, i))

    starts = sorted({s for _, tiers in parts for s, _ in tiers})
    return Price(rates_at(None), tuple((s, rates_at(s)) for s in starts), provider)


class Prices:
    """Price look-ups, cached per (provider, model): overrides first, then genai-prices' snapshot."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._cache: dict[tuple[str | None, str], Price | None] = {}
        self._lock = threading.Lock()

    def price(self, provider: str | None, model: str | None) -> Price | None:
        """The price of `model` (from `provider` if named), or None when it has none."""
        if model is None:
            return None
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self.overrides.get(model)
        if found is None:
            found = _lookup(provider, model)
        with self._lock:
            if len(self._cache) < _MAX_CACHE:
                self._cache[key] = found
        return found


def _lookup(provider: str | None, model: str) -> Price | None:
    """genai-prices' bundled snapshot (imported on first use; never updated from the network here)."""
    from genai_prices import Usage, calc_price

    provider_id = PROVIDER_ALIASES.get(provider, provider) if provider else None
    try:
        calc = calc_price(Usage(input_tokens=0, output_tokens=0), model, provider_id=provider_id)
    except Exception:  # noqa: BLE001 - LookupError for an unknown model; anything else: unpriced too
        return None
    return price_from_model_price(calc.model_price, None if provider else calc.provider.id)
