"""The execution life cycle: each move once, whoever makes it (the agent, the watchdog, another thread)."""

from __future__ import annotations

import contextvars
import logging
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk import trace as sdk_trace

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.instrument.execution import Execution
from exporter.instrument.watchdog import WATCHDOG
from exporter.pipeline.logs import LOGGER_NAME

# --------------------------------------------------------------------------- helpers


class _SpanEnds:
    """Every call to `end()` on an SDK span, by span id: the SDK ignores a second call (it only
    logs a warning), so the exported spans alone cannot show one."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()

    def of(self, run: Execution) -> int:
        assert run.span_id is not None
        return self.calls[int(run.span_id, 16)]


@pytest.fixture
def span_ends(monkeypatch: pytest.MonkeyPatch) -> _SpanEnds:
    ends = _SpanEnds()
    real = sdk_trace.Span.end

    def end(self: sdk_trace.Span, end_time: int | None = None) -> None:
        with ends._lock:
            ends.calls[self.context.span_id] += 1
        real(self, end_time)

    monkeypatch.setattr(sdk_trace.Span, "end", end)
    return ends


@pytest.fixture
def no_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog thread stays out: only the timeout a test forces fires."""
    monkeypatch.setattr(WATCHDOG, "watch", lambda run, deadline: None)
    monkeypatch.setattr(WATCHDOG, "unwatch", lambda run: None)


class _Racy(Execution):
    """An Execution whose `_phase`, once armed, lets a rival act in another thread right after
    the N-th read in the arming thread: between a phase check and the move it decides on."""

    @property  # type: ignore[override]
    def _phase(self) -> int:
        value: int = self.__dict__["_phase"]
        armed = self.__dict__.get("_armed")
        if armed is not None and armed[0] is threading.current_thread():
            armed[1] -= 1
            if armed[1] == 0:
                del self.__dict__["_armed"]
                rival = threading.Thread(target=armed[2], name="rival")
                rival.start()
                rival.join(0.3)  # a rival held up by the execution's lock waits for the move: fine
                self.__dict__["_rival"] = rival
        return value

    @_phase.setter
    def _phase(self, value: int) -> None:
        self.__dict__["_phase"] = value


def _arm(run: Any, rival: Callable[[], None], on_read: int = 1) -> None:
    run.__class__ = _Racy
    run.__dict__["_armed"] = [threading.current_thread(), on_read, rival]


def _rival_done(run: Any) -> None:
    rival = run.__dict__.get("_rival")
    assert rival is not None, "the rival never ran: the forced interleaving did not happen"
    rival.join(5)
    assert not rival.is_alive()


def _in_own_context(fn: Callable[[], None]) -> None:
    """Run `fn` in a copy of the context: an end() from another thread cannot detach what it
    attached, and that must not leak into the next test."""
    contextvars.copy_context().run(fn)


def _assert_each_counted_once(cap: testing.Capture, span_ends: _SpanEnds, run: Execution) -> None:
    agent = run.agent
    assert cap.total("agent_executions_started_total", agent=agent) == 1
    assert cap.total("agent_executions_finished_total", agent=agent) == 1
    assert cap.value("agent_executions_in_progress", agent=agent) == 0
    assert cap.total("agent_executions_pending", agent=agent) == 0
    assert span_ends.of(run) == 1
    assert [s.name for s in cap.spans()].count(sc.SPAN_EXECUTION.format(agent=agent)) == 1


# --------------------------------------------------------------------------- forced interleavings


@pytest.mark.usefixtures("no_watchdog")
def test_a_timeout_between_the_check_and_the_move_of_wait_ends_the_execution_once(span_ends):
    """The watchdog's timeout right after wait() read 'running': finished once, gauges at 0, span ended once."""
    with testing.capture(log_level="off") as cap:

        def scenario() -> None:
            run = exporter.start_execution("w", max_duration=0.001)
            assert isinstance(run, Execution)
            time.sleep(0.01)  # past its deadline
            _arm(run, run._timeout_from_watchdog)
            run.wait()
            _rival_done(run)
            run.end()
            _assert_each_counted_once(cap, span_ends, run)

        _in_own_context(scenario)


@pytest.mark.usefixtures("no_watchdog")
def test_an_end_between_the_check_and_the_move_of_start_ends_the_execution_once(span_ends):
    """An end() from another thread right after start() read 'pending': one finish, nothing left running."""
    with testing.capture(log_level="off") as cap:

        def scenario() -> None:
            run = exporter.start_execution("s", pending="queued", max_duration=60)
            assert isinstance(run, Execution)
            _arm(run, run.end)
            run.start()
            _rival_done(run)
            assert cap.value("agent_executions_in_progress", agent="s") == 0
            run.end()  # the agent's own end, as in a `finally:`: too late, changes nothing
            _assert_each_counted_once(cap, span_ends, run)

        _in_own_context(scenario)


@pytest.mark.usefixtures("no_watchdog")
def test_a_step_entered_as_the_timeout_ends_its_execution_fails_with_it(span_ends):
    """The timeout right after a step's enter read 'running': the step fails (timeout), none counts passed."""
    with testing.capture(log_level="off") as cap:

        def scenario() -> None:
            run = exporter.start_execution("t", max_duration=0.001)
            assert isinstance(run, Execution)
            time.sleep(0.01)
            _arm(run, run._timeout_from_watchdog, on_read=2)  # read 1: pending?  read 2: running?
            with run.step("late") as step:
                _rival_done(run)
                step.evaluate("q", score=1.0)  # after its execution's end: not counted
            run.end()
            _assert_each_counted_once(cap, span_ends, run)
            assert cap.value("agent_execution_failures_total", agent="t", trigger="manual", cause="timeout") == 1
            assert cap.value("agent_steps_total", agent="t", step="late", status="passed") == 0
            assert cap.value("agent_steps_total", agent="t", step="late", status="failed") == 1
            assert cap.total("agent_evaluations_total", agent="t") == 0

        _in_own_context(scenario)
    (late,) = [s for s in cap.spans() if s.name == "late"]
    assert late.attributes[sc.ATTR_STEP_STATUS] == "failed"
    assert late.attributes[sc.ATTR_ERROR_TYPE] == "timeout"
    assert span_ends.calls[late.context.span_id] == 1


def test_a_stale_watchdog_call_does_not_end_an_execution_that_waited_and_runs_again():
    """A timeout decided before a wait() (the deadline has moved since) ends nothing."""
    with testing.capture(log_level="off") as cap:
        run = exporter.start_execution("stale", max_duration=60)
        assert isinstance(run, Execution)
        run.wait()
        run.start()
        run._timeout_from_watchdog()  # the watchdog's list of due executions was made earlier
        assert not run.ended
        run.end()
        assert cap.value("agent_executions_finished_total", agent="stale", trigger="manual", status="completed") == 1


def test_fail_after_the_end_is_counted_not_recorded():
    """fail() and cancel() after the end change nothing and count use_after_end, their arguments unchecked."""
    with testing.capture(log_level="off") as cap:
        with exporter.execution("late") as run:
            pass
        run.fail("not a cause")
        run.cancel()
        assert run.status == "completed"
        assert cap.value("agent_exporter_dropped_total", reason="use_after_end") == 2
        assert cap.value("agent_exporter_dropped_total", reason="unknown_cause") == 0


@pytest.mark.usefixtures("no_watchdog")
def test_a_fail_that_loses_the_race_with_the_end_is_counted_not_lost():
    """An end() from another thread right after fail() checked the phase: the fail counts as use after end."""
    with testing.capture(log_level="off") as cap:

        def scenario() -> None:
            run = exporter.start_execution("f")
            assert isinstance(run, Execution)
            _arm(run, run.end)
            run.fail("tool_error")
            _rival_done(run)
            assert run.status == "completed"
            assert cap.value("agent_exporter_dropped_total", reason="use_after_end") == 1

        _in_own_context(scenario)


def test_a_log_handler_may_call_back_into_the_execution_it_hears_about():
    """A log handler that calls wait() on the execution_started event: no deadlock, the books balance."""

    class Reentrant(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(sc.LOG_EXECUTION_STARTED):
                exporter.current_execution().wait()

    handler = Reentrant()
    logger = logging.getLogger(LOGGER_NAME)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        with testing.capture(log_level="debug") as cap:

            def scenario() -> None:
                with exporter.execution("r") as run, run.step("s"):
                    assert isinstance(run, Execution)

            worker = threading.Thread(target=scenario, daemon=True)  # a regression must not hang the suite
            worker.start()
            worker.join(5)
            assert not worker.is_alive(), "deadlocked: a log handler ran under the execution's lock"
            assert cap.total("agent_executions_finished_total", agent="r") == 1
            assert cap.value("agent_execution_pending_duration_seconds_count", agent="r", reason="approval") == 1
            assert cap.value("agent_executions_in_progress", agent="r") == 0
            assert cap.total("agent_executions_pending", agent="r") == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --------------------------------------------------------------------------- never raising


class _Hostile(str):
    """A str whose hashing, comparison and slicing raise: user data from a hostile library."""

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __getitem__(self, key: Any) -> str:
        raise RuntimeError("no slice")


def test_cancel_never_raises_into_the_agent():
    """cancel() with a message that breaks the library's cleaning: counted as an internal error, not raised."""
    with testing.capture(log_level="off") as cap:
        with exporter.execution("c") as run:
            run.cancel(_Hostile("stop"))
        assert cap.value("agent_exporter_dropped_total", reason="internal_error") == 1
        assert cap.total("agent_executions_finished_total", agent="c") == 1


def test_set_status_never_raises_into_the_agent():
    """set_status() with a status whose hash raises: counted as an internal error, the step keeps its status."""
    with testing.capture(log_level="off") as cap:
        with exporter.execution("c") as run, run.step("s") as step:
            step.set_status(_Hostile("failed"))
            assert step.status == "passed"
        assert cap.value("agent_exporter_dropped_total", reason="internal_error") == 1
        assert cap.value("agent_steps_total", agent="c", step="s", status="passed") == 1


# --------------------------------------------------------------------------- a real host


@pytest.fixture
def busy_watchdog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The watchdog looks every millisecond, and threads switch often: the races get their chance."""
    monkeypatch.setattr(WATCHDOG, "interval", 0.001)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("busy_watchdog")
def test_threads_waiting_starting_and_timing_out_keep_exact_books(span_ends):
    """8 threads, executions that wait, start, suspend and time out mid-flight: every book balances exactly."""
    threads, per_thread = 8, 250
    runs: list[Execution] = []
    errors: list[BaseException] = []
    with testing.capture(log_level="off", max_label_values=10_000) as cap:
        barrier = threading.Barrier(threads)

        def one(rng: random.Random, i: int) -> None:
            pending = "queued" if i % 3 == 0 else None
            run = exporter.execution("h", max_duration=rng.uniform(0.001, 0.005), pending=pending)
            assert isinstance(run, Execution)
            with run:
                runs.append(run)
                with run.step("a") as s:  # starts it when queued
                    time.sleep(rng.uniform(0, 0.002))
                    s.record_usage(input_tokens=1)
                run.wait()
                time.sleep(rng.uniform(0, 0.001))
                run.start()
                if i % 5 == 0:
                    carrier = run.suspend()
                    if carrier:  # empty when the watchdog ended it first
                        with exporter.resume_execution(carrier) as again:
                            assert isinstance(again, Execution)
                            runs.append(again)
                            with again.step("b"):
                                time.sleep(rng.uniform(0, 0.003))
                    return
                with run.step("b") as s, s.tool_call("t"):
                    time.sleep(rng.uniform(0, 0.003))
                if i % 7 == 0:
                    run.cancel()

        def worker(w: int) -> None:
            rng = random.Random(w)
            barrier.wait()
            try:
                for i in range(per_thread):
                    contextvars.copy_context().run(one, rng, i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert not errors
        deadline = time.monotonic() + 5  # the watchdog may still be ending the last ones
        while time.monotonic() < deadline and not all(r.ended for r in runs):
            time.sleep(0.01)

        started = cap.total("agent_executions_started_total", agent="h")
        finished = cap.total("agent_executions_finished_total", agent="h")
        assert started == finished == threads * per_thread
        timeouts = cap.value("agent_execution_failures_total", agent="h", trigger="manual", cause="timeout")
        assert 0 < timeouts < finished  # the watchdog did fire mid-flight, and not on everything
        assert cap.value("agent_executions_in_progress", agent="h") == 0
        assert cap.total("agent_executions_pending", agent="h") == 0
        assert cap.value("agent_exporter_dropped_total", reason="internal_error") == 0
        spans = [s for s in cap.spans() if s.name == sc.SPAN_EXECUTION.format(agent="h")]
        assert len(spans) == len(runs)
        assert all(span_ends.of(r) == 1 for r in runs)
        assert all(n == 1 for n in span_ends.calls.values())  # steps and tool calls too
