"""`TaskSink`: the task store's consumer of events, writing off the agent's thread.

The agent's thread only appends `(time, event)` to a bounded queue. A writer thread folds the
queue into one row change per execution every `flush_interval` and writes them in one
transaction; it also reads the waiting summary (for the waiting gauges) and purges old rows.
When the database is down or slow, changes are kept (merged, bounded) and retried with backoff;
past the bound they are dropped and counted. Nothing here ever blocks or raises into an execution.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .. import _suppress
from .. import semconv as sc
from ..pipeline.events import (
    Event,
    ExecutionFinished,
    ExecutionRunning,
    ExecutionStarted,
    ExecutionSuspended,
    ExecutionWaiting,
)
from ..semconv import DropReason
from .backend import Backend, redact_url
from .fold import Delta, StepNotes, fold

if TYPE_CHECKING:
    from ..pipeline.metrics import Metrics

_log = logging.getLogger("agent_exporter")

MAX_QUEUE = 100_000  # events waiting for the writer
MAX_HELD_ROWS = 50_000  # row changes held while the database is unreachable
MAX_BATCH = 20_000  # events folded per write
PURGE_EVERY = 3600.0
MAX_BACKOFF = 30.0

T = TypeVar("T")
_STATE_EVENTS = frozenset({ExecutionStarted, ExecutionRunning, ExecutionWaiting, ExecutionSuspended, ExecutionFinished})


class TaskSink:
    """Records executions in a task store; `record()` is all the agent's thread pays."""

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        retention_days: float = 7.0,
        refresh_interval: float = 15.0,
        flush_interval: float = 0.5,
        max_queue: int = MAX_QUEUE,
        max_held_rows: int = MAX_HELD_ROWS,
    ) -> None:
        self.backend = Backend(url)  # a bad URL or a missing driver raises here, at configure()
        self.metrics = metrics
        self.retention = retention_days * 86400.0
        self.refresh_interval = refresh_interval
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_held_rows = max_held_rows
        self.written = 0  # row changes the database accepted
        self.dropped = 0  # events or row changes lost (queue full, database unreachable too long)
        self._where = redact_url(url)
        self._reader: Backend | None = None
        self._read_lock = threading.Lock()  # one reader connection, shared by the app's threads
        self.closed = False
        self._start()

    def _start(self) -> None:
        self._q: deque[tuple[float, Event]] = deque()
        self._held: dict[str, Delta] = {}
        self._notes = StepNotes()  # what open steps recorded, written when they end
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stopping = False
        self._retry_at = 0.0
        self._backoff = 1.0
        self._refresh_at = 0.0
        self._refresh_asked = 0  # refresh_now() calls so far
        self._refresh_done = 0  # the last of them a refresh has answered
        self._purge_at = 0.0
        self._shown: set[tuple[str, str]] = set()  # waiting gauge label pairs set so far
        # Its SQL is the library's own I/O: never traced by the app's sqlite3 / psycopg instrumentation.
        self._thread = _suppress.thread(self._run, "agent-exporter-tasks")
        self._thread.start()

    # ------------------------------------------------------------------ the agent's side

    def record(self, event: Event) -> None:
        if self.closed:
            self._drop(DropReason.TASK_STORE_UNAVAILABLE, 1, "task store closed (after shutdown); event not written")
            return
        n = len(self._q)
        # Past the bound, counts (steps, tokens, scores) are dropped first; a state change (start,
        # wait, suspend, finish) still enters up to twice the bound, so a row is not left running.
        if n >= self.max_queue and (n >= 2 * self.max_queue or type(event) not in _STATE_EVENTS):
            self._drop(DropReason.TASK_STORE_FULL, 1, f"task store queue full ({self.max_queue} events); event dropped")
            return
        self._q.append((time.time(), event))
        if type(event) is ExecutionSuspended:
            # The process may end right after handing the carrier on: write the wait now, not
            # within the next 0.5 s, so that a crash after suspend() leaves the row waiting.
            self._wake.set()

    @property
    def queued(self) -> int:
        """Events waiting for the writer."""
        return len(self._q)

    # ------------------------------------------------------------------ the writer

    def _run(self) -> None:
        while True:
            if len(self._q) < MAX_BATCH:  # a backlog is worked through without pausing
                self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._cycle()
            except Exception as exc:  # noqa: BLE001 - the writer must survive its own bugs
                self._drop(DropReason.INTERNAL_ERROR, 1, f"task store writer: {exc!r}")
            if not self._q and not self._held:
                self._idle.set()
            if stopping:
                return

    def _cycle(self) -> None:
        q, batch = self._q, list[tuple[float, Event]]()
        while q and len(batch) < MAX_BATCH:
            batch.append(q.popleft())
        if batch:
            self._idle.clear()
            fold(batch, self._held, self._notes)
        now = time.monotonic()
        if self._held and (now >= self._retry_at or self._stopping):
            self._write(now)
        if now >= self._retry_at:
            asked = self._refresh_asked  # read before the refresh: a later ask needs a later one
            if now >= self._refresh_at or asked != self._refresh_done:
                self._refresh_at = now + self.refresh_interval
                self._refresh()
                self._refresh_done = asked
            if now >= self._purge_at and self.retention > 0:
                self._purge_at = now + PURGE_EVERY
                self._purge()

    def _write(self, now: float) -> None:
        rows = [d.row() for d in self._held.values()]
        steps = [s for d in self._held.values() for s in d.steps]
        try:
            self.backend.write(rows, steps)
        except Exception as exc:  # noqa: BLE001 - any driver error: keep, retry later, count past the bound
            self._failed(now, exc)
            if len(self._held) > self.max_held_rows:
                lost = len(self._held)
                self._held.clear()
                self._drop(
                    DropReason.TASK_STORE_UNAVAILABLE,
                    lost,
                    f"task store {self._where} unreachable; {lost} execution row changes dropped",
                )
            return
        self.written += len(rows)
        self._held.clear()
        self._backoff = 1.0
        self._retry_at = 0.0

    def _failed(self, now: float, exc: BaseException) -> None:
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self.metrics.warnings.warn(
            "task_store", f"task store {self._where} failed ({type(exc).__name__}: {exc}); retrying"
        )

    def _refresh(self) -> None:
        """The waiting gauges, from the store: every process sees every parked execution."""
        try:
            summary = self.backend.waiting()
        except Exception as exc:  # noqa: BLE001
            self._failed(time.monotonic(), exc)
            return
        m = self.metrics
        totals: dict[tuple[str, str], tuple[int, float]] = {}
        for agent, reason, n, oldest in summary:
            key = (m.agent_label(agent), reason)  # agents over the cap share one series
            have = totals.get(key)
            totals[key] = (n, oldest) if have is None else (have[0] + n, min(have[1], oldest))
        now_shown = set(totals)
        for key, (n, oldest) in totals.items():
            m.child(sc.TASKS_WAITING, *key).set(n)
            m.child(sc.TASKS_WAITING_OLDEST, *key).set(oldest)
        for key in self._shown - now_shown:
            m.child(sc.TASKS_WAITING, *key).set(0)
            m.child(sc.TASKS_WAITING_OLDEST, *key).set(0)
        self._shown |= now_shown

    def _purge(self) -> None:
        try:
            self.backend.purge(time.time() - self.retention)
        except Exception as exc:  # noqa: BLE001
            self._failed(time.monotonic(), exc)

    def _drop(self, reason: DropReason, amount: int, message: str) -> None:
        self.dropped += amount
        self.metrics.drop(reason, message, amount)

    # ------------------------------------------------------------------ control

    def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every queued event is written; True if all were."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._retry_at = 0.0
        while time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            if self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic()))) and not self._q and not self._held:
                return True
        return not self._q and not self._held

    def read(self, query: Callable[[Backend], T]) -> T:
        """Run `query` on the reader connection (not the writer's, which belongs to its thread):
        one caller at a time, and under suppression, as all of the library's own I/O."""
        with self._read_lock, _suppress.suppressed():
            if self._reader is None:
                self._reader = Backend(self.backend.url)
            return query(self._reader)

    def refresh_now(self, timeout: float = 5.0) -> bool:
        """Write what is queued, then read the waiting summary once more (tests); True if done in time."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._refresh_asked += 1
        asked = self._refresh_asked
        while self._refresh_done < asked and time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(0.05)
        return self._refresh_done >= asked

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (bounded by `timeout`), then stop the writer and disconnect.

        Later events are refused and counted (`closed`): nothing queues with no writer to take it."""
        if self.closed:
            return
        deadline = time.monotonic() + max(0.0, timeout)
        self.flush(timeout)
        self.closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join(max(0.05, deadline - time.monotonic()))
        if not self._thread.is_alive():  # a writer still in the database keeps its connection
            self.backend.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()

    def after_fork(self) -> None:
        """In a forked child: the parent's thread, queue and connections are not ours; start afresh
        (the parent writes what it queued)."""
        if self.closed:
            return
        self.backend.forget()
        if self._reader is not None:
            self._reader.forget()
        self._read_lock = threading.Lock()
        self._start()
