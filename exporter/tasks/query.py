"""Reading the task list back: filters, rows as JSON-ready dicts, closing abandoned waits.

Used by `agent-exporter tasks` and by `exporter.cancel_task()`. The trace rule holds here too:
a row carries its `trace_id` only when the trace was kept; otherwise `trace` says why not.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..instrument.carrier import CARRIER_VERSION
from .backend import Backend
from .schema import STEPS_TABLE, TABLE

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """`30m`, `6h`, `7d` (ago) or an ISO date/time (UTC unless it says) -> unix time."""
    now = time.time() if now is None else now
    m = _DURATION.match(value.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        want = "a duration like 30m, 6h, 7d or an ISO date like 2026-11-30T08:00"
        raise ValueError(f"--since {value!r}: {want}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class Filters:
    agent: str | None = None
    status: str | None = None
    trigger: str | None = None
    since: float | None = None
    search: str | None = None  # text in the task id or the description (case-insensitive)
    limit: int = 100


def list_tasks(backend: Backend, f: Filters) -> list[dict[str, Any]]:
    """The newest executions matching `f`, newest first."""
    where, params = [], []
    for column in ("agent", "status", "trigger"):
        value = getattr(f, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.since is not None:
        where.append("started_at >= ?")
        params.append(f.since)
    if f.search:
        like = "ILIKE" if backend.dialect == "postgresql" else "LIKE"  # SQLite's LIKE ignores ASCII case
        where.append(f"(task_id {like} ? OR description {like} ?)")
        pattern = f"%{f.search}%"
        params += [pattern, pattern]
    sql = f"SELECT * FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC LIMIT ?"
    params.append(max(1, int(f.limit)))
    now = time.time()
    return [present(r, now) for r in backend.fetch(sql, params)]


def get_task(backend: Backend, task_id: str) -> dict[str, Any] | None:
    rows = backend.fetch(f"SELECT * FROM {TABLE} WHERE task_id = ?", [task_id])
    return rows[0] if rows else None


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


NOT_EXPORTED = "not exported by agent-exporter"


def present(r: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A stored row as the list shows it (times in ISO 8601 UTC, the trace only when kept)."""
    kept = r["trace_kept"]
    if r["trace_id"] is None:
        trace = "none"
    elif kept is None:  # running; no trace export configured; or another tool's spans, exported by it
        trace = "not decided yet (running)" if r["ended_at"] is None else NOT_EXPORTED
    else:
        trace = "kept" if kept else "not kept (sampled out)"
    n = r["score_n"]
    score = r["score"] if r["score"] is not None else (r["score_sum"] / n if n else None)
    waiting = r["status"] == "pending" and r["waiting_since"] is not None
    running = r["status"] == "in_progress" and r["started_at"] is not None
    return {
        "task_id": r["task_id"],
        "agent": r["agent"],
        "trigger": r["trigger"],
        "version": r["version"],
        "status": r["status"],
        "cause": r["cause"],
        "description": r["description"],
        "started_at": _iso(r["started_at"]),
        "ended_at": _iso(r["ended_at"]),
        "runtime_seconds": r["runtime_seconds"],
        # still running: the time since it started (waits included), as of this read
        "running_seconds": round(max(0.0, now - r["started_at"]), 3) if running else None,
        "current_step": r["current_step"] if r["status"] == "in_progress" else None,
        "steps_done": r["steps_done"],
        "steps_total": r.get("steps_total"),  # declared by the execution; a store of schema 1 has none
        "waiting_reason": r["waiting_reason"] if waiting else None,
        "waiting_seconds": round(now - r["waiting_since"], 3) if waiting else None,
        "score": score,
        "input_tokens": r["input_tokens"],
        "output_tokens": r["output_tokens"],
        # A store older than schema 3 has no cost columns: its cost is unknown, its cache parts 0.
        "cache_read_tokens": r.get("cache_read_tokens", 0),
        "cache_write_tokens": r.get("cache_write_tokens", 0),
        # USD of the priced model usage; None when unknown (prices off, only unpriced models)
        "cost_usd": r.get("cost_usd"),
        "unpriced_tokens": r.get("unpriced_tokens", 0),  # not in cost_usd: a cost beside them is a lower bound
        "trace_id": r["trace_id"] if kept else None,
        "trace": trace,
        "error": r["error"],
        # a store of schema < 3 has none of these
        "input": r.get("input"),
        "output": r.get("output"),
        "rerun_of": r.get("rerun_of"),
        "cost": cost_of(r),
    }


def cost_of(r: Mapping[str, Any]) -> float | None:
    """The execution's cost when the store records one (a column named cost or cost_usd), else None."""
    for key in ("cost", "cost_usd"):
        v = r.get(key)
        if v is not None:
            return float(v)
    return None


def get_steps(backend: Backend, task_id: str) -> list[dict[str, Any]]:
    """The execution's stored steps, in order (none from a store of schema < 3)."""
    try:
        rows = backend.fetch(f"SELECT * FROM {STEPS_TABLE} WHERE task_id = ? ORDER BY step_index", [task_id])
    except Exception:  # noqa: BLE001 - an older store has no steps table: no steps to show
        backend.close()
        return []
    for r in rows:
        for key in ("evaluations", "tool_calls"):
            r[key] = json.loads(r[key]) if r[key] else []
    return rows


def show_task(backend: Backend, task_id: str) -> dict[str, Any] | None:
    """One task whole: its row as the list shows it, and its steps in order."""
    row = get_task(backend, task_id)
    if row is None:
        return None
    task = present(row, time.time())
    task["steps"] = get_steps(backend, task_id)
    return task


def steps_text(r: Mapping[str, Any]) -> str | None:
    """ "step k of n" when the execution declared n (k: the steps ended, and the one running), else None."""
    n = r.get("steps_total")
    if not n:
        return None
    v = r["steps_done"]
    k = v + 1 if r["status"] == "in_progress" and r["current_step"] and v < n else v
    return f"step {k} of {n}"


def trace_text(r: Mapping[str, Any]) -> str:
    """The trace id when it was kept, else why there is none (as the table says it)."""
    return str(r["trace_id"]) if r.get("trace_id") else str(r["trace"])


def carrier_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A carrier for a waiting execution known only by its row (the original carrier was lost)."""
    carrier: dict[str, Any] = {
        "v": CARRIER_VERSION,
        "agent": row["agent"],
        "trigger": row["trigger"],
        "task_id": row["task_id"],
        "reason": row["waiting_reason"] or "approval",
        "suspended_at": float(row["waiting_since"] or time.time()),
        "active": 0.0,
        "steps": int(row["steps_done"]),
        "started": True,
        "score_sum": float(row["score_sum"]),
        "score_n": int(row["score_n"]),
        "tokens_in": 0,
        "tokens_out": 0,
    }
    if row["trace_id"] and row["span_id"]:
        carrier["traceparent"] = f"00-{row['trace_id']}-{row['span_id']}-01"
    else:  # no trace was made: the closing part starts one of its own
        carrier["traceparent"] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    if row["description"] is not None:
        carrier["description"] = row["description"]
    if row.get("steps_total") is not None:
        carrier["steps_total"] = int(row["steps_total"])
    return carrier


DESCRIPTION_WIDTH = 40  # characters of the description the table shows (--json has it whole)
ERROR_WIDTH = 60  # and of the error message


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, `…` where it was cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


UNKNOWN_COST = "—"


def cost_text(cost: float | None, unpriced_tokens: int = 0) -> str:
    """`$0.0123`; `—` when unknown; `≥$0.0123` when some of the usage had no price (a lower bound)."""
    if cost is None:
        return UNKNOWN_COST
    return f"{'≥' if unpriced_tokens else ''}${cost:.4f}"


def columns_for_table(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The CLI's table: a few columns, each as (header, cells).

    RUNTIME s is the active runtime of an ended execution, and for a running one the time since it
    started, marked `(running)`; STEPS is the steps ended, or "step k of n" when the execution
    declared n (k: the steps ended, and the one running while it runs); COST is `cost_text`;
    DESCRIPTION and ERROR are shortened to one line (`--json` has them whole).
    """
    picks = [
        ("TASK ID", "task_id"), ("AGENT", "agent"), ("TRIGGER", "trigger"), ("STATUS", "status"),
        ("CAUSE", "cause"), ("STARTED (UTC)", "started_at"), ("RUNTIME s", "runtime_seconds"),
        ("STEPS", "steps_done"), ("STEP / WAITING", "current_step"), ("SCORE", "score"), ("COST", "cost_usd"),
        ("TRACE", "trace_id"),
        ("DESCRIPTION", "description"), ("ERROR", "error"),
    ]  # fmt: skip
    out = []
    for header, key in picks:
        cells = []
        for r in rows:
            v: Any = r.get(key)
            if key == "current_step" and r["status"] == "pending":
                v = f"{r['waiting_reason']} for {r['waiting_seconds']:.0f}s"
            elif key == "runtime_seconds" and v is None and r.get("running_seconds") is not None:
                v = f"{r['running_seconds']:.1f} (running)"
            elif key == "steps_done" and r.get("steps_total"):
                v = steps_text(r)
            elif key == "cost_usd":
                v = cost_text(v, r.get("unpriced_tokens") or 0)
            elif key == "description" and v:
                v = shorten(v, DESCRIPTION_WIDTH)
            elif key == "error" and v:
                v = shorten(v, ERROR_WIDTH)
            elif key == "trace_id" and v is None:
                v = trace_text(r)
            elif key == "started_at" and v:
                v = v[:19].replace("T", " ")
            elif isinstance(v, float):
                v = f"{v:.3f}" if key != "score" else f"{v:.2f}"
            cells.append("" if v is None else str(v))
        out.append((header, cells))
    return out
