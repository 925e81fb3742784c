"""The case library: saved tasks (input, recorded output, outcome, per-criterion results), one JSON
object per line, a plain file a team reviews and commits; `agent-exporter cases save` writes it.

A case is a task that can be run again: it needs its captured input (`run.record_input()`), whole.
A task without one is refused by name, with the reason; nothing half-saved.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import semconv as sc
from ..content import WITHHELD
from ..tasks.backend import Backend
from ..tasks.query import Filters, cost_of, get_steps, get_task, list_tasks, present

TRUNCATED_MARK = "…[truncated "


class CaseError(ValueError):
    """A task that cannot be a case (no input, input cut), or a case file that cannot be read."""


def decode(text: str) -> Any:
    """Captured content back as a value: JSON when it is JSON (a dict, list, number), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def criteria_of(steps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per criterion (evaluation name) over the steps: `fail` if any evaluation of it failed, else
    `pass` if one passed (else None: scores only), and the mean score."""
    out: dict[str, dict[str, Any]] = {}
    acc: dict[str, list[float]] = {}
    for s in steps:
        for e in s.get("evaluations") or ():
            c = out.setdefault(e["name"], {"result": None, "score": None})
            if e["result"] == sc.EvaluationResult.FAIL.value or c["result"] == sc.EvaluationResult.FAIL.value:
                c["result"] = sc.EvaluationResult.FAIL.value
            elif e["result"] is not None:
                c["result"] = e["result"]
            if e["score"] is not None:
                acc.setdefault(e["name"], []).append(float(e["score"]))
    for name, scores in acc.items():
        out[name]["score"] = sum(scores) / len(scores)
    return out


def case_of(row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The case for a stored task; CaseError when the task cannot be re-run (why, by name)."""
    tid = row["task_id"]
    text = row.get("input")
    if text is None:
        raise CaseError(
            f"{tid}: no captured input (the agent did not call run.record_input(), or capture_content was off)"
        )
    if text == WITHHELD:
        raise CaseError(f"{tid}: its input was withheld (the redaction hook failed when it was captured)")
    if TRUNCATED_MARK in text:
        raise CaseError(f"{tid}: its input was truncated when captured (raise configure(max_content_bytes=))")
    r = present(row, now)
    output = r["output"]
    return {
        "id": tid,
        "agent": r["agent"],
        "trigger": r["trigger"],
        "version": r["version"],
        "input": decode(text),
        "output": None if output is None else decode(output),
        "status": r["status"],
        "cause": r["cause"],
        "runtime_seconds": r["runtime_seconds"],
        "input_tokens": r["input_tokens"],
        "output_tokens": r["output_tokens"],
        "cost": cost_of(row),
        "score": r["score"],
        "criteria": criteria_of(steps),
        "saved_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
    }


def select(
    backend: Backend, task_ids: Sequence[str] = (), filters: Filters | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The cases for the tasks named, or matching `filters` (re-runs left out); and the refusals."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    if task_ids:
        for tid in task_ids:
            row = get_task(backend, tid)
            if row is None:
                refused.append(f"{tid}: no such task in the store")
            else:
                rows.append(row)
    elif filters is not None:
        listed = [r for r in list_tasks(backend, filters) if r["trigger"] != sc.TRIGGER_RERUN]
        rows = [row for r in listed if (row := get_task(backend, r["task_id"])) is not None]
    cases = []
    for row in rows:
        if row["status"] in (sc.ExecutionStatus.IN_PROGRESS.value, sc.ExecutionStatus.PENDING.value):
            refused.append(f"{row['task_id']}: still {row['status']}; only an ended task is a case")
            continue
        try:
            cases.append(case_of(row, get_steps(backend, row["task_id"]), now))
        except CaseError as exc:
            refused.append(str(exc))
    return cases, refused


def load(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The cases of a JSON-lines file (blank lines skipped); CaseError naming the bad line."""
    cases = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                case = json.loads(line)
            except ValueError as exc:
                raise CaseError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(case, dict) or not isinstance(case.get("id"), str) or "input" not in case:
                raise CaseError(f"{path}:{n}: a case is an object with an 'id' string and an 'input'")
            cases.append(case)
    return cases


def append(path: str | os.PathLike[str], cases: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Append the cases whose id the file does not hold yet; (added, already there)."""
    have = {c["id"] for c in load(path)} if os.path.exists(path) else set()
    added = skipped = 0
    with open(path, "a", encoding="utf-8") as f:
        for case in cases:
            if case["id"] in have:
                skipped += 1
                continue
            f.write(json.dumps(case, ensure_ascii=False, sort_keys=False) + "\n")
            have.add(case["id"])
            added += 1
    return added, skipped
