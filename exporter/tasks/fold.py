"""Events -> one row change per execution: what a batch of events does to the task table.

A `Delta` is the change a batch makes to one execution's row: counts to add, and the newest
state (by event time). A change the database refused is kept and the next batch is folded into
it (counts add, the newer state wins): nothing is lost while the store is briefly down.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .. import semconv as sc
from ..pipeline.events import (
    EvaluationRecorded,
    Event,
    ExecutionFinished,
    ExecutionResumed,
    ExecutionRunning,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
    StepFinished,
    StepStarted,
    TokensUsed,
)
from .schema import STATE

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
        return {f.name: getattr(self, f.name) for f in fields(self)}


def fold(batch: list[tuple[float, Event]], into: dict[str, Delta]) -> None:
    """Apply `(time, event)` pairs, in order, to the per-execution deltas in `into`."""
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
        _apply(d, at, event)


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
