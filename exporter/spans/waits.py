"""Framework runs that stop for a human: one execution that waits, then resumes, keyed by agent and task id.

The mapping ends a run that stopped to wait (a LangGraph interrupt, a root span with
`task.status = "waiting"`, an approval a framework hook saw) with `ExecutionSuspended` instead of
`ExecutionFinished`. `Waits` sits between the mapping and the recorder (in the span bridge and in
OTLP ingest) and makes the two runs one execution, with the native suspend/resume events so the
metrics and the task store read it as they read `suspend()` / `resume_execution()`:

- a suspended run **parks**: `ExecutionWaiting` (the `agent_executions_pending{reason}` gauge in
  this process, the task store row `pending` with its waiting-since time) and `ExecutionSuspended`
  (its log event; the store keeps the runtime so far);
- the next run of the same agent with the same task id **resumes** it: its `ExecutionStarted`
  becomes `ExecutionResumed` (started is counted once; the wait observed once in
  `agent_execution_pending_duration_seconds`), its events take the first run's trigger and
  version, and its end adds the runtime of the earlier parts (the wait is not runtime). The
  parked execution is found in this process first, then in the task store (a run parked by
  another process with the same store): one read by primary key, only for a run whose task id
  was given (`exporter.task(task_id=)` or `task.id`), when no wait of it is parked here;
- a run can wait again after a resume: its runtime so far goes on with it.

A run that was never given a task id parks under its span id, which no later run can name: it
waits until `max_waits` newer waits push it out (then it leaves the gauge and is counted
`trace_over_budget`). `tick()` (the runtime's housekeeping) closes, in this process's gauge, the
waits another process resumed from the store.

A `Hold` is for a framework whose run says it stopped only after its spans ended (the OpenAI
Agents SDK returns `result.interruptions`): the bridge keeps the end of the executions started
under the hold until the framework hook releases it, with the wait's reason or none.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

from .. import semconv as sc
from ..pipeline.events import (
    Event,
    EventSink,
    ExecutionFinished,
    ExecutionRef,
    ExecutionResumed,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
)
from ..semconv import DropReason, PendingReason

DEFAULT_MAX_WAITS = 10_000  # waits parked in this process (each ~300 bytes)
RECONCILE_INTERVAL = 15.0  # seconds between checks of this process's waits against the task store
_PENDING = sc.ExecutionStatus.PENDING.value
_COMPLETED = sc.ExecutionStatus.COMPLETED.value


class _Parked(NamedTuple):
    key: int  # the wait's key in the pending gauge
    ref: ExecutionRef  # of the run that parked it
    reason: str
    since: float  # unix time
    active: float  # runtime so far


class _Live(NamedTuple):
    """A resumed execution whose run is still being recorded."""

    ref: ExecutionRef  # its events' ref: the parked run's trigger and version
    active: float  # the runtime of its earlier parts


class Hold:
    """The ends of the executions started under it, kept until the framework's run says how it ended."""

    __slots__ = ("_lock", "_kept", "_waits", "released", "seen")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: list[Event] = []
        self._waits: Waits | None = None
        self.released = False
        self.seen = 0  # executions that ended under this hold (0: the run's spans made none)

    def keep(self, waits: Waits, end: Event) -> bool:
        """Keep `end`; False when already released (the caller records it now)."""
        with self._lock:
            self.seen += 1
            if self.released:
                return False
            self._waits = waits
            self._kept.append(end)
            return True

    def release(self, waiting: str | None) -> int:
        """Record what was kept, as a wait (`waiting`, a pending reason) or as it ended; the number of
        executions that ended under the hold."""
        with self._lock:
            self.released = True
            kept, self._kept = self._kept, []
            waits = self._waits
            seen = self.seen
        if waits is not None and kept:
            now = time.time()
            out: list[Event] = []
            for e in kept:
                if waiting is not None and isinstance(e, ExecutionFinished) and e.status == _COMPLETED:
                    e = ExecutionSuspended(e.ref, waiting, now, None, e.runtime)
                out.append(e)
            waits.end_all(out)
        return seen


hold_var: ContextVar[Hold | None] = ContextVar("agent_exporter_hold", default=None)


class Waits:
    """Parks suspended framework runs and resumes them by (agent, task id); forwards every event."""

    def __init__(
        self,
        sink: EventSink,
        drop: Callable[..., Any],
        *,
        tasks: Any = None,
        max_waits: int = DEFAULT_MAX_WAITS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sink = sink
        self._drop = drop
        self.tasks = tasks  # the task store's TaskSink, or None: resumes in this process only
        self._max = max_waits
        self._clock = clock
        self._lock = threading.Lock()
        self._parked: dict[tuple[str, str], _Parked] = {}  # (agent, task id) -> its wait, oldest first
        self._live: dict[tuple[str | None, str | None], _Live] = {}  # (trace id, span id) of resumed runs
        self._keys = itertools.count(1)
        self._reconcile_at = 0.0

    @property
    def parked(self) -> int:
        return len(self._parked)

    # ------------------------------------------------------------------ events in

    def record(self, events: Iterable[Event], holds: Mapping[str, Hold] | None = None) -> None:
        """The events of one assembled trace; an execution whose root span id is in `holds` keeps its end there."""
        record = self._sink.record
        for e in events:
            if type(e) is ExecutionStarted:
                self._started(e)
                continue
            ref = e.ref
            if type(e) is ExecutionFinished or type(e) is ExecutionSuspended:
                hold = holds.get(ref.span_id or "") if holds else None
                if hold is not None and hold.keep(self, e):
                    continue
                self._end(e)
                continue
            live = self._live.get((ref.trace_id, ref.span_id)) if self._live else None
            record(e._replace(ref=live.ref) if live is not None else e)

    def end_all(self, ends: Iterable[Event]) -> None:
        """Ends a hold kept: recorded now."""
        for e in ends:
            self._end(e)

    def _started(self, e: ExecutionStarted) -> None:
        ref = e.ref
        found = self._find(ref) if ref.task_id != ref.span_id else None  # no task id given: nothing to resume
        if found is None:
            self._sink.record(e)
            return
        parked, key, waited = found
        live = _Live(ref._replace(trigger=parked.ref.trigger, version=parked.ref.version or ref.version), parked.active)
        with self._lock:
            self._live[(ref.trace_id, ref.span_id)] = live
        self._sink.record(ExecutionResumed(live.ref, parked.reason, key, waited))

    def _find(self, ref: ExecutionRef) -> tuple[_Parked, int | None, float | None] | None:
        """The wait `ref`'s run resumes: parked here (its gauge key), else in the task store (no key)."""
        with self._lock:
            parked = self._parked.pop((ref.agent, ref.task_id), None)
        now = self._clock()
        if parked is not None:
            return parked, parked.key, max(0.0, now - parked.since)
        tasks = self.tasks
        if tasks is None:
            return None
        try:
            row = tasks.read(lambda store: _get_task(store, ref.task_id))
        except Exception as exc:  # noqa: BLE001 - a store that cannot answer: counted as a new execution
            self._drop(
                DropReason.TASK_STORE_UNAVAILABLE,
                f"task store unreadable ({type(exc).__name__}); task {ref.task_id!r} counted as a new execution, "
                "not as the resume of a wait",
            )
            return None
        if row is None or row["status"] != _PENDING or row["agent"] != ref.agent:
            return None
        since = row["waiting_since"]
        stored = ExecutionRef(row["agent"], row["trigger"], row["task_id"], version=row["version"])
        reason = row["waiting_reason"] or PendingReason.APPROVAL.value
        parked = _Parked(0, stored, reason, float(since or now), float(row["runtime_seconds"] or 0.0))
        return parked, None, None if since is None else max(0.0, now - float(since))

    def _end(self, e: Event) -> None:
        ref = e.ref
        with self._lock:
            live = self._live.pop((ref.trace_id, ref.span_id), None) if self._live else None
        if live is not None:
            e = e._replace(ref=live.ref)
        carried = live.active if live is not None else 0.0
        if isinstance(e, ExecutionFinished):
            self._sink.record(e._replace(runtime=e.runtime + carried) if carried else e)
        elif isinstance(e, ExecutionSuspended):
            self._park(e._replace(active=(e.active or 0.0) + carried))
        else:
            self._sink.record(e)

    def _park(self, e: ExecutionSuspended) -> None:
        ref = e.ref
        since = e.since if e.since is not None else self._clock()
        key = next(self._keys)
        out: list[_Parked] = []
        with self._lock:
            old = self._parked.pop((ref.agent, ref.task_id), None)
            if old is not None:
                out.append(old)
            while len(self._parked) >= self._max:
                out.append(self._parked.pop(next(iter(self._parked))))
            self._parked[(ref.agent, ref.task_id)] = _Parked(key, ref, e.reason, since, e.active or 0.0)
        for gone in out:  # replaced by a newer wait of the same task, or over the budget
            self._sink.record(ExecutionResumed(gone.ref, gone.reason, gone.key, None))
        if len(out) > (old is not None):
            self._drop(
                DropReason.TRACE_OVER_BUDGET,
                f"more than {self._max} framework runs waiting in this process; the oldest left the pending gauge",
                len(out) - (old is not None),
            )
        self._sink.record(ExecutionWaiting(ref, e.reason, key, since))
        self._sink.record(e._replace(since=since))

    # ------------------------------------------------------------------ housekeeping

    def tick(self, now: float | None = None) -> None:
        """Every `RECONCILE_INTERVAL` s with a task store: waits parked here that another process
        resumed (their row no longer pending) leave this process's gauge. Never raises."""
        tasks = self.tasks
        if tasks is None or not self._parked:
            return
        now = time.monotonic() if now is None else now
        if now < self._reconcile_at:
            return
        self._reconcile_at = now + RECONCILE_INTERVAL
        try:
            settled = self._clock() - RECONCILE_INTERVAL  # younger waits may not be written yet
            with self._lock:
                waiting = [(k, p) for k, p in self._parked.items() if p.since < settled]
            if not waiting:
                return
            ids = [task_id for (_, task_id), _ in waiting]
            rows = tasks.read(lambda store: _statuses(store, ids))
            gone: list[_Parked] = []
            with self._lock:
                for k, p in waiting:
                    row = rows.get(k[1])
                    if row is not None and (row[0] != _PENDING or row[1] > p.since + 1e-3):
                        if self._parked.get(k) is p:
                            del self._parked[k]
                            gone.append(p)
            for p in gone:
                self._sink.record(ExecutionResumed(p.ref, p.reason, p.key, None))
        except Exception as exc:  # noqa: BLE001
            self._drop(DropReason.INTERNAL_ERROR, f"framework waits: reading the task store failed: {exc!r}")

    def internal_error(self, message: str) -> None:
        self._drop(DropReason.INTERNAL_ERROR, message)

    def after_fork(self) -> None:
        """In a forked child: the parent's waits are the parent's (its gauge counts them)."""
        self._lock = threading.Lock()
        self._parked.clear()
        self._live.clear()


def _get_task(store: Any, task_id: str) -> Any:
    from ..tasks.query import get_task

    return get_task(store, task_id)


def _statuses(store: Any, ids: list[str]) -> dict[str, tuple[str, float]]:
    """task id -> (status, waiting_since or 0) for the rows of `ids` (in chunks)."""
    from ..tasks.schema import TABLE

    out: dict[str, tuple[str, float]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        for r in store.fetch(f"SELECT task_id, status, waiting_since FROM {TABLE} WHERE task_id IN ({marks})", chunk):
            out[r["task_id"]] = (r["status"], float(r["waiting_since"] or 0.0))
    return out
