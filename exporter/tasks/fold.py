"""Events -> one row change per execution: what a batch of events does to the task table.

A `Delta` is the change a batch makes to one execution's row: counts to add, and the newest
state (by event time). A change the database refused is kept and the next batch is folded into
it (counts add, the newer state wins): nothing is lost while the store is briefly down.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any

from .. import semconv as sc
from ..pipeline.events import (
    BranchTaken,
    EvaluationRecorded,
    Event,
    ExecutionContent,
    ExecutionFinished,
    ExecutionResumed,
    ExecutionRunning,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    StepFinished,
    StepStarted,
    TokensUsed,
    ToolCallFinished,
)
from .schema import MAX_STEPS_KEPT, STATE

IN_PROGRESS = sc.ExecutionStatus.IN_PROGRESS.value
PENDING = sc.ExecutionStatus.PENDING.value


@dataclass(slots=True)
class Delta:
    """The change to one execution's row (column names as in `schema.COLUMNS`)."""

    task_id: str
    agent: str
    trigger: str
    version: str | None = None
    description: str | None = None
    status: str = IN_PROGRESS
    cause: str | None = None
    error: str | None = None
    started_at: float | None = None
    state_at: float = 0.0  # 0: no state change in this batch (the row keeps its own)
    ended_at: float | None = None
    runtime_seconds: float | None = None
    waiting_reason: str | None = None
    waiting_since: float | None = None
    steps_done: int = 0
    current_step: str | None = None
    score: float | None = None
    score_sum: float = 0.0
    score_n: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    trace_id: str | None = None
    span_id: str | None = None
    trace_kept: bool | None = None
    steps_total: int | None = None  # declared by the execution (`execution(steps=n)`)
    input: str | None = None  # captured (`run.record_input()`); the last one recorded
    output: str | None = None
    rerun_of: str | None = None  # the case a re-run re-ran
    # Not a column: the steps that ended in this batch, rows of `schema.STEPS_TABLE`.
    steps: list[dict[str, Any]] = field(default_factory=list)
    # USD of the priced usage in this batch, added to the row's; None: nothing known about cost here
    cost_usd: float | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    unpriced_tokens: int = 0  # tokens of models with no known price (never priced, never guessed)

    def state(self, at: float, status: str, **kw: Any) -> None:
        """Take a state seen at `at` if it is the newest so far (the fields it does not name are cleared)."""
        if at < self.state_at:
            return
        self.state_at = at
        kw["status"] = status
        for name in STATE:
            setattr(self, name, kw.get(name))

    def row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "steps"}


MAX_OPEN = 10_000  # executions whose open steps are followed at once; past it the oldest are forgotten
MAX_ITEMS = 50  # evaluations / tool calls kept per step


class StepNotes:
    """What the steps still open have recorded (evaluations, tool calls, branch), across batches:
    written with the step when it ends. Bounded; forgotten when the execution ends or suspends."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()  # task id -> its open steps

    def _of(self, task_id: str) -> dict[str, Any]:
        notes = self._open.get(task_id)
        if notes is None:
            notes = self._open[task_id] = {"order": [], "steps": {}, "n": 0}
            while len(self._open) > MAX_OPEN:
                self._open.popitem(last=False)
        return notes

    def _step(self, task_id: str, name: str) -> dict[str, Any]:
        notes = self._of(task_id)
        step: dict[str, Any] | None = notes["steps"].get(name)
        if step is None:
            step = notes["steps"][name] = {"evaluations": [], "tool_calls": [], "branch": None}
            notes["order"].append(name)
        return step

    def started(self, task_id: str, name: str) -> None:
        self._step(task_id, name)

    def evaluation(self, e: EvaluationRecorded) -> None:
        items = self._step(e.ref.task_id, e.step)["evaluations"]
        if len(items) < MAX_ITEMS:
            items.append({"name": e.name, "result": e.result, "score": e.score})

    def tool_call(self, e: ToolCallFinished) -> None:
        notes = self._of(e.ref.task_id)
        if not notes["order"]:
            return  # no step known to be open: the call stays in the metrics only
        items = notes["steps"][notes["order"][-1]]["tool_calls"]
        if len(items) < MAX_ITEMS:
            items.append({"tool": e.tool, "outcome": e.outcome, "seconds": round(e.duration, 6)})

    def branch(self, e: BranchTaken) -> None:
        self._step(e.ref.task_id, e.step)["branch"] = e.path

    def finished(self, at: float, e: StepFinished) -> dict[str, Any] | None:
        """The step's row, or None past the bound of steps kept per execution."""
        task_id = e.ref.task_id
        notes = self._of(task_id)
        step = notes["steps"].pop(e.step, None) or {"evaluations": [], "tool_calls": [], "branch": None}
        if e.step in notes["order"]:
            notes["order"].remove(e.step)
        notes["n"] += 1
        index = e.step_index or notes["n"]  # the span bridge's steps carry no index
        if index > MAX_STEPS_KEPT:
            return None
        scores = [x["score"] for x in step["evaluations"] if x["score"] is not None]
        return {
            "task_id": task_id,
            "step_index": index,
            "name": e.step,
            "status": e.status,
            "runtime_seconds": e.duration,
            "ended_at": at,
            "score": sum(scores) / len(scores) if scores else None,
            "evaluations": json.dumps(step["evaluations"]) if step["evaluations"] else None,
            "tool_calls": json.dumps(step["tool_calls"]) if step["tool_calls"] else None,
            "branch": step["branch"],
        }

    def ended(self, task_id: str) -> None:
        self._open.pop(task_id, None)


def fold(batch: list[tuple[float, Event]], into: dict[str, Delta], notes: StepNotes | None = None) -> None:
    """Apply `(time, event)` pairs, in order, to the per-execution deltas in `into` (with `notes`,
    the steps that end become rows of their own)."""
    for at, event in batch:
        ref = event.ref
        d = into.get(ref.task_id)
        if d is None:
            d = into[ref.task_id] = Delta(ref.task_id, ref.agent, ref.trigger, ref.version, started_at=at)
        elif d.started_at is None or at < d.started_at:
            d.started_at = at
        if ref.trace_id is not None:
            d.trace_id = ref.trace_id
            if d.span_id is None:
                d.span_id = ref.span_id
        if d.version is None:
            d.version = ref.version
        if d.steps_total is None:
            d.steps_total = ref.steps
        if d.rerun_of is None:
            d.rerun_of = ref.rerun_of
        _apply(d, at, event)
        if notes is not None:
            _note(notes, d, at, event)


def _note(notes: StepNotes, d: Delta, at: float, e: Event) -> None:
    if isinstance(e, StepStarted):
        notes.started(d.task_id, e.step)
    elif isinstance(e, EvaluationRecorded):
        notes.evaluation(e)
    elif isinstance(e, ToolCallFinished):
        notes.tool_call(e)
    elif isinstance(e, BranchTaken):
        notes.branch(e)
    elif isinstance(e, StepFinished):
        row = notes.finished(at, e)
        if row is not None:
            d.steps.append(row)
    elif isinstance(e, ExecutionFinished | ExecutionSuspended):
        notes.ended(d.task_id)


def _apply(d: Delta, at: float, e: Event) -> None:
    if isinstance(e, StepFinished):
        d.steps_done += 1
    elif isinstance(e, StepStarted):
        d.current_step = e.step
    elif isinstance(e, TokensUsed):
        d.input_tokens += e.input
        d.output_tokens += e.output
        d.cache_read_tokens += e.cache_read
        d.cache_write_tokens += e.cache_write
        if e.cost is not None:
            d.cost_usd = e.cost + (d.cost_usd or 0.0)
        elif e.unpriced:
            d.unpriced_tokens += e.input + e.output
    elif isinstance(e, EvaluationRecorded):
        if e.score is not None:
            d.score_sum += e.score
            d.score_n += 1
    elif isinstance(e, ExecutionStarted):
        if e.description is not None:
            d.description = e.description
    elif isinstance(e, ExecutionRunning):
        if e.running:
            d.state(at, IN_PROGRESS)
    elif isinstance(e, ExecutionWaiting):
        d.state(at, PENDING, waiting_reason=e.reason, waiting_since=e.since)
    elif isinstance(e, ExecutionSuspended):
        since = e.since if e.since is not None else at
        d.state(
            at, PENDING, waiting_reason=e.reason, waiting_since=since, trace_kept=e.trace_kept, runtime_seconds=e.active
        )
    elif isinstance(e, ExecutionContent):
        if e.kind == "input":
            d.input = e.text
        else:
            d.output = e.text
    elif isinstance(e, ExecutionResumed):
        pass  # the ExecutionRunning that follows sets the state
    elif isinstance(e, ExecutionFinished):
        # Its cost is the whole execution's, already added part by part (TokensUsed, in whichever
        # process ran each part): a priced end only says the cost is known, $0 if nothing was spent.
        if e.cost is not None and d.cost_usd is None:
            d.cost_usd = 0.0
        d.state(
            at,
            e.status,
            cause=e.cause,
            error=e.error,
            ended_at=at,
            runtime_seconds=e.runtime,
            score=e.score,
            trace_kept=e.trace_kept,
        )
