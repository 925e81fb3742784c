"""The carrier `suspend()` hands over and `resume_execution()` reads: checked field by field.

A carrier crosses process boundaries (a queue, a database row, a human's approval link), so
any field may arrive damaged. Each field that validates is kept; each that does not is named
and replaced by a documented default, so a damaged trace context never costs the execution its
agent, trigger or task id (and the per-trigger books still balance).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..semconv import PendingReason

CARRIER_VERSION = 1

_REASONS = frozenset(r.value for r in PendingReason)
_propagator = TraceContextTextMapPropagator()


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _traceparent(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    ctx = _propagator.extract({"traceparent": v})
    return trace.get_current_span(ctx).get_span_context().is_valid


# Field -> check. Absent optional fields (description, max_duration) are not errors.
_FIELDS: dict[str, Callable[[Any], bool]] = {
    "v": lambda v: v == CARRIER_VERSION and not isinstance(v, bool),
    "traceparent": _traceparent,
    "agent": _text,
    "trigger": _text,
    "task_id": _text,
    "reason": lambda v: isinstance(v, str) and v in _REASONS,
    "suspended_at": _number,
    "active": _number,
    "steps": _count,
    "started": lambda v: isinstance(v, bool),
    "score_sum": _number,
    "score_n": _count,
    "tokens_in": _count,
    "tokens_out": _count,
}
_OPTIONAL: dict[str, Callable[[Any], bool]] = {
    "description": lambda v: isinstance(v, str),
    "max_duration": lambda v: _number(v) and v > 0,
    "version": _text,  # the agent's version, when the execution had one
    "steps_total": lambda v: _count(v) and v > 0,  # the steps the execution declared, when it did
    # Model spend so far (issue 24): priced USD, tokens of unpriced models, the cache parts of input.
    "cost_usd": _number,
    "unpriced_tokens": _count,
    "tokens_cache_read": _count,
    "tokens_cache_write": _count,
}


def make_carrier(
    context: Any,
    *,
    description: str | None,
    max_duration: float | None,
    version: str | None = None,
    steps_total: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The carrier of an execution suspended now: its W3C `traceparent` (from `context`), the
    `fields` `parse_carrier` checks (agent, trigger, task id, reason, counts), the time of the
    suspension, and the optional description, maximum duration, agent version (so the resumed
    part counts under the version the execution began with, whatever the resuming process runs)
    and number of steps declared."""
    carrier: dict[str, Any] = {}
    _propagator.inject(carrier, context=context)
    carrier.update({"v": CARRIER_VERSION, **fields, "suspended_at": time.time()})
    if description is not None:
        carrier["description"] = description
    if max_duration is not None:
        carrier["max_duration"] = max_duration
    if version is not None:
        carrier["version"] = version
    if steps_total is not None:
        carrier["steps_total"] = steps_total
    return carrier


def parse_carrier(carrier: Any) -> tuple[dict[str, Any], list[str]]:
    """The fields of `carrier` that validate, and the names of those that do not.

    Not a mapping at all: nothing is kept and `["carrier"]` is returned as the bad part.
    A score sum without a valid count (or the reverse) is dropped as a pair.
    """
    if not isinstance(carrier, Mapping):
        return {}, ["carrier"]
    good: dict[str, Any] = {}
    bad: list[str] = []
    for key, check in _FIELDS.items():
        value = carrier.get(key)
        try:
            ok = check(value)
        except Exception:  # noqa: BLE001 - a hostile value must not make parsing raise
            ok = False
        if ok:
            good[key] = value
        else:
            bad.append(key)
    for key, check in _OPTIONAL.items():
        if key in carrier:
            if check(carrier[key]):
                good[key] = carrier[key]
            else:
                bad.append(key)
    if ("score_sum" in good) != ("score_n" in good):
        good.pop("score_sum", None)
        good.pop("score_n", None)
    good.pop("v", None)
    return good, bad
