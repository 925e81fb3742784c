"""The event vocabulary: what the metrics and log events are made from, whoever produced it.

Producers (the native API in `execution.py` / `steps.py`, the span bridge reading other
instrumentations' spans) emit these; one consumer, `recorder.Recorder`, turns them into metrics
and log events. Events are plain immutable records (NamedTuples: cheap to build on the hot
path) holding *names* already cleaned (masked, bounded) but not capped: the cardinality cap is
applied by the consumer, for Prometheus only, so logs (and spans) keep the real names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol


class ExecutionRef(NamedTuple):
    """Who an event belongs to: built once per execution and shared by all its events."""

    agent: str
    trigger: str
    task_id: str
    trace_id: str | None = None
    span_id: str | None = None  # the execution's span
    exemplar: Mapping[str, str] | None = None  # the trace link for observations; None if the trace is not kept
    version: str | None = None  # the agent's version (deployed workflow / prompt revision), if known
    steps: int | None = None  # the number of steps the execution declared (`execution(steps=n)`), if it did
    rerun_of: str | None = None  # inside a re-run: the id of the case (the original task) it re-runs


class ExecutionStarted(NamedTuple):
    """Counted once per execution, when it first runs (or ends without having run)."""

    ref: ExecutionRef
    description: str | None = None  # cleaned (masked, bounded); for the task store


class ExecutionRunning(NamedTuple):
    """The execution entered (`running=True`) or left the running state in this process."""

    ref: ExecutionRef
    running: bool


class ExecutionWaiting(NamedTuple):
    """The execution waits (queued, awaiting approval) in this process, since unix time `since`."""

    ref: ExecutionRef
    reason: str
    key: int  # identifies the wait among the agent's others, for `ExecutionResumed`
    since: float


class ExecutionResumed(NamedTuple):
    """A wait ended: in this process (`key` set), or elsewhere (a carrier resumed: `key` None)."""

    ref: ExecutionRef
    reason: str
    key: int | None
    waited: float | None  # seconds; None when unknown (not observed)


class ExecutionSuspended(NamedTuple):
    """This process's part ended; another process may resume it."""

    ref: ExecutionRef
    reason: str
    since: float | None = None  # unix time of the suspension (the carrier's `suspended_at`)
    trace_kept: bool | None = None  # the part's trace is exported
    active: float | None = None  # runtime so far (pending excluded), when another process resumes from the store


class ExecutionFinished(NamedTuple):
    """The execution ended: completed, failed (with a cause) or cancelled."""

    ref: ExecutionRef
    status: str
    cause: str | None
    runtime: float  # active seconds, pending time excluded
    score: float | None  # mean evaluation score, if any
    error: str | None = None  # a short, masked message for failures
    # exported (True), dropped by sampling (False); None: the library exports no trace (none
    # configured, or another tool's spans, exported by that tool)
    trace_kept: bool | None = None
    # USD of its priced model usage; None when prices are off, or it had usage and none was priced
    cost: float | None = None


class StepStarted(NamedTuple):
    """Sent only when a task store listens (it shows the current step); metrics ignore it."""

    ref: ExecutionRef
    step: str


class StepFinished(NamedTuple):
    ref: ExecutionRef
    step: str
    status: str
    duration: float
    step_index: int = 0
    span_id: str | None = None


class ToolCallFinished(NamedTuple):
    ref: ExecutionRef
    tool: str
    outcome: str
    duration: float


class EvaluationRecorded(NamedTuple):
    ref: ExecutionRef
    step: str
    name: str
    result: str | None  # pass / fail, None when the evaluation gave only a score
    score: float | None


class TokensUsed(NamedTuple):
    """Model usage: `input` includes the cache parts, `output` the reasoning part."""

    ref: ExecutionRef
    step: str
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    provider: str | None = None  # cleaned, not capped; None: unknown
    model: str | None = None
    cost: float | None = None  # USD; None: prices off, or the model has no price (then `unpriced`)
    unpriced: bool = False  # prices are on and this model has none: counted, never guessed


class LlmCallFinished(NamedTuple):
    """One model call ended (`step.llm_call()`, or a framework's model-call span)."""

    ref: ExecutionRef
    provider: str | None
    model: str | None
    outcome: str  # LlmOutcome
    duration: float


class BranchTaken(NamedTuple):
    ref: ExecutionRef
    step: str
    path: str
    not_selected: Sequence[str] = ()
    span_id: str | None = None


class ExecutionContent(NamedTuple):
    """`run.record_input()` / `run.record_output()`: the captured text (masked, redacted, bounded).

    Sent only when something listens (a task store, a re-run); metrics ignore it."""

    ref: ExecutionRef
    kind: str  # "input" or "output"
    text: str


Event = (
    ExecutionStarted | ExecutionRunning | ExecutionWaiting | ExecutionResumed | ExecutionSuspended
    | ExecutionFinished | StepStarted | StepFinished | ToolCallFinished | EvaluationRecorded | TokensUsed | BranchTaken
    | LlmCallFinished
    | ExecutionContent
)  # fmt: skip


class EventSink(Protocol):
    """Where producers send events (the library's `Recorder`, or a test's list)."""

    def record(self, event: Event) -> None: ...
