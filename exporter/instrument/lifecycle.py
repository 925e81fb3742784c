"""An execution's life cycle in this process: an explicit state machine under the execution's one lock.

    created ──enter──▶ opening ──▶ running ◀──start()── pending
                                      │  ──wait()──▶     │
                                      ▼                  ▼
                         ended (exit, end(), timeout) | suspended (suspend())

Each move is decided under the lock from the phase found there, so it happens exactly once
whoever asks for it: the agent's thread, the max-duration watchdog, another thread. The events
that come in pairs (`ExecutionRunning(True)`/`(False)`, `ExecutionWaiting`/`ExecutionResumed`)
are recorded under the same lock, in the order of the moves: a resume can never overtake the
wait it closes (the pending gauge would keep a waiter that left), and a timeout can never end
an execution a second time. None of them logs, so no user code (a log handler) runs under the
lock. What only the winner of a move does next happens after the lock is released: record
`ExecutionStarted` (it may log), and for the end, end the open steps and the span and record
`ExecutionFinished`; nothing moves out of `ended` or `suspended`.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from .. import semconv as sc
from ..pipeline.events import ExecutionRef, ExecutionResumed, ExecutionRunning, ExecutionStarted, ExecutionWaiting
from ..semconv import PendingReason
from .watchdog import WATCHDOG

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ..pipeline.recorder import Recorder
    from .execution import Execution

# The phases. `ended` and `suspended` are final in this process (a suspended execution continues
# elsewhere, as a new Execution), so they come last: `phase >= SUSPENDED` means over.
CREATED, OPENING, PENDING, RUNNING, SUSPENDED, ENDED = range(6)


class Lifecycle:
    """The phases of one execution and the moves between them; `Execution` is built on it.

    The `_to_*` / `_from_*` helpers run with the lock held; the other `_` methods take it.
    """

    # Set by Execution before any move; declared here for the type checker.
    ref: ExecutionRef
    status: str
    max_duration: float | None
    _rec: Recorder
    _state: Runtime
    _span: Any
    _description: str | None

    def _init_lifecycle(self, pending_reason: str | None) -> None:
        self._lock = threading.Lock()
        self._phase = CREATED
        self._pending_reason = pending_reason
        self._pending_since = 0.0
        self._started = False  # ExecutionStarted recorded (here, or by the part before a suspension)
        self._run_t0 = 0.0
        self._active = 0.0  # seconds running, in this process and the parts before it
        self._deadline = math.inf  # time.monotonic() past which the watchdog may end it
        # The runtime's generation when made: in a forked child the parent's executions are not
        # the child's to move (nor their lock, which another thread of the parent may have held).
        self._generation = self._state.generation

    @property
    def ended(self) -> bool:
        return self._phase >= SUSPENDED

    # ------------------------------------------------------------------ the moves

    def _claim_enter(self) -> bool:
        """created → opening: True for the one caller that enters the execution."""
        with self._lock:
            if self._phase != CREATED:
                return False
            self._phase = OPENING
            return True

    def _opened(self) -> None:
        """opening → pending (created pending) or running: the span exists, the execution begins."""
        if self._generation != self._state.generation:  # foreign: made before a fork
            return
        with self._lock:
            if self._phase != OPENING:
                return
            if self._pending_reason is not None:
                self._to_pending(self._pending_reason)
                return
            first = self._to_running()
        if first:
            self._rec.record(ExecutionStarted(self.ref, self._description))

    def _start(self) -> None:
        """pending → running (`start()`, or a step entered while pending)."""
        if self._generation != self._state.generation:  # foreign: made before a fork
            return
        with self._lock:
            if self._phase != PENDING:
                return
            waited = self._from_pending()
            self._span.add_event(sc.EVENT_RESUMED, {sc.ATTR_PENDING_SECONDS: waited})
            first = self._to_running()
        if first:
            self._rec.record(ExecutionStarted(self.ref, self._description))

    def _wait(self, reason: str) -> bool:
        """running → pending (`wait()`); False if the execution was already over."""
        if self._generation != self._state.generation:  # foreign: made before a fork
            return False
        with self._lock:
            if self._phase == RUNNING:
                self._from_running()
                self._to_pending(reason)
            return self._phase < SUSPENDED

    def _leave(self, to: int, timed_out: bool = False) -> int | None:
        """running or pending → ended or suspended: the phase left, for the one caller that moved
        it; None for every other (over already, never entered). A timeout (`timed_out`) ends only
        a running execution past its deadline (not one that waits, or runs again after a wait)."""
        if self._generation != self._state.generation:  # foreign: made before a fork
            return None
        first = False
        with self._lock:
            was = self._phase
            if was == RUNNING:
                if timed_out and time.monotonic() < self._deadline:
                    return None
                self._from_running()
            elif was == PENDING and not timed_out:
                self._from_pending()
                first = to == ENDED and not self._started  # cancelled or failed while queued: started and finished
                self._started |= first
            else:
                return None
            self._phase = to
        if first:
            self._rec.record(ExecutionStarted(self.ref, self._description))
        return was

    # ------------------------------------------------------------------ under the lock

    def _to_running(self) -> bool:
        """Enter running; True the first time (the caller records `ExecutionStarted`, after the lock)."""
        first = not self._started
        self._started = True
        self._rec.record(ExecutionRunning(self.ref, True))
        self.status = sc.ExecutionStatus.IN_PROGRESS.value
        self._phase = RUNNING
        self._run_t0 = time.perf_counter()
        if self.max_duration is not None:
            self._deadline = time.monotonic() + max(0.0, self.max_duration - self._active)
            WATCHDOG.watch(cast("Execution", self), self._deadline)
        return first

    def _from_running(self) -> None:
        """Leave running: accumulate active time, leave the in-progress gauge and the watchdog."""
        self._active += time.perf_counter() - self._run_t0
        self._rec.record(ExecutionRunning(self.ref, False))
        if self.max_duration is not None:
            self._deadline = math.inf
            WATCHDOG.unwatch(cast("Execution", self))

    def _to_pending(self, reason: str) -> None:
        self._pending_reason = reason
        self._pending_since = time.time()
        self._phase = PENDING
        self.status = sc.ExecutionStatus.PENDING.value
        self._rec.record(ExecutionWaiting(self.ref, reason, id(self), self._pending_since))
        self._span.add_event(sc.EVENT_PENDING, {sc.ATTR_PENDING_REASON: reason})

    def _from_pending(self) -> float:
        """Leave pending: the seconds waited."""
        reason = self._pending_reason or PendingReason.QUEUED.value
        waited = max(0.0, time.time() - self._pending_since)
        self._rec.record(ExecutionResumed(self.ref, reason, id(self), waited))
        self._pending_reason = None
        return waited
