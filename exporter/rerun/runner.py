"""Re-run saved cases against the code as it is now, and compare: `exporter.rerun()`.

Each case's input goes to the team's own entry point (sync or async) inside a re-run scope
(`instrument/rerun_scope.py`): the execution it starts is recorded with trigger `rerun`, a task id
derived from the case id, and the version given. Its results come from the library's own events
(a listener on the recorder): status, cause, runtime, tokens, per-criterion results. A case whose
function raises fails that case, never the run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _config
from .. import semconv as sc
from ..instrument.recording import exc_text
from ..instrument.rerun_scope import RerunScope, rerun_scope_var
from ..pipeline.events import (
    EvaluationRecorded,
    Event,
    ExecutionContent,
    ExecutionFinished,
    TokensUsed,
)
from .cases import decode, load
from .report import Report, outcome

COMPLETED = sc.ExecutionStatus.COMPLETED.value
FAILED = sc.ExecutionStatus.FAILED.value


@dataclass
class _Run:
    """What one case's first execution recorded, from the events."""

    task_id: str | None = None
    status: str | None = None
    cause: str | None = None
    runtime: float | None = None
    score: float | None = None
    error: str | None = None
    cost: float | None = None  # USD of its priced model usage (None: unpriced, or prices off)
    input_tokens: int = 0
    output_tokens: int = 0
    output: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)


class _Collector:
    """The recorder's listener: routes each re-run execution's events to its case."""

    def __init__(self) -> None:
        self.runs: dict[str, _Run] = {}  # task id -> the case's run (the case's first execution only)
        self._lock = threading.Lock()

    def started(self, run: _Run, task_id: str) -> None:
        with self._lock:
            if run.task_id is None:
                run.task_id = task_id
                self.runs[task_id] = run

    def record(self, event: Event) -> None:
        run = self.runs.get(event.ref.task_id)
        if run is None:
            return
        if isinstance(event, ExecutionFinished):
            run.status, run.cause, run.runtime, run.score = event.status, event.cause, event.runtime, event.score
            run.error, run.cost = event.error, event.cost
        elif isinstance(event, EvaluationRecorded):
            run.evaluations.append({"name": event.name, "result": event.result, "score": event.score})
        elif isinstance(event, TokensUsed):
            run.input_tokens += event.input
            run.output_tokens += event.output
        elif isinstance(event, ExecutionContent) and event.kind == "output":
            run.output = event.text


def load_entry_point(spec: str) -> Callable[[Any], Any]:
    """`package.module:function` (the current directory importable, as `python -m` has it)."""
    import importlib
    import sys

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"--run {spec!r}: the entry point is package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"--run {spec!r}: cannot import {module}: {exc}") from exc
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"--run {spec!r}: {module} has no {name}") from None
    if not callable(obj):
        raise ValueError(f"--run {spec!r}: {name} is not callable")
    return obj  # type: ignore[no-any-return]


class CaseTimeout(Exception):
    """The case ran longer than the re-run's timeout (not a TimeoutError the agent itself raised)."""


async def _bounded(awaitable: Any, timeout: float | None) -> None:
    task = asyncio.ensure_future(awaitable)
    finished, _ = await asyncio.wait({task}, timeout=timeout)
    if not finished:
        task.cancel()  # the execution inside records the cancellation; the case is a timeout
        await asyncio.wait({task})
        raise CaseTimeout(f"ran longer than {timeout:g}s")
    task.result()


def _call(fn: Callable[[Any], Any], value: Any, timeout: float | None) -> None:
    result = fn(value)
    if inspect.isawaitable(result):  # an async entry point (or a sync one handing back a coroutine)
        asyncio.run(_bounded(result, timeout))


def rerun(
    cases: Iterable[Mapping[str, Any]] | str | os.PathLike[str],
    fn: Callable[[Any], Any],
    *,
    version: str | None = None,
    store: str | None = None,
    concurrency: int = 1,
    timeout: float | None = None,
    progress: Callable[[int, int, Mapping[str, Any]], None] | None = None,
) -> Report:
    """Run each case's input through `fn` (sync or async) and compare with what the case recorded.

    `cases` is a case file (`agent-exporter cases save`) or its objects. Unconfigured, the library is
    configured here (no metrics port; `store` records the re-runs) and shut down at the end; already
    configured, that configuration is used as it is. The executions `fn` starts are recorded with
    trigger `rerun`, a task id `<case id>~rerun-<run id>` (the row's `rerun_of` is the case id), and
    `version`: these win over what `fn`'s own code names. `timeout` (seconds) fails a case that runs
    longer (a sync function is left running in its thread). `progress(done, total, case)` is called as
    each case ends. Ctrl-C (KeyboardInterrupt) stops: the report holds the cases that ended
    (`interrupted` is True). Returns the report; `report.check(rules)` gates on it.
    """
    todo: list[dict[str, Any]] = [dict(c) for c in (load(cases) if isinstance(cases, str | os.PathLike) else cases)]
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    ids = [c.get("id") for c in todo]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids repeat: each case is one task id")
    owned = _config.current() is None
    if owned:
        _config.configure("agent-exporter-rerun", metrics_port=None, task_store=store, log_level="off")
    elif store is not None:
        warnings.warn("rerun(store=...) ignored: the library is already configured", RuntimeWarning, stacklevel=2)
    state = _config.current()
    assert state is not None
    collector = _Collector()
    rec = state.recorder
    rec.listeners = (*rec.listeners, collector)
    run_id = uuid.uuid4().hex[:8]
    report = Report(version=version, run_id=run_id, started_at=time.time())
    try:
        _run_all(todo, fn, version, run_id, concurrency, timeout, collector, report, progress)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        rec.listeners = tuple(x for x in rec.listeners if x is not collector)
        if owned:
            _config.flush(10.0)
            _config.shutdown()
        report.finish([c["id"] for c in todo])
    return report


def _run_all(
    cases: list[dict[str, Any]],
    fn: Callable[[Any], Any],
    version: str | None,
    run_id: str,
    concurrency: int,
    timeout: float | None,
    collector: _Collector,
    report: Report,
    progress: Callable[[int, int, Mapping[str, Any]], None] | None,
) -> None:
    done: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()
    waiting = list(reversed(cases))
    running: dict[str, tuple[dict[str, Any], _Run, float | None]] = {}
    total = len(cases)

    def work(case: dict[str, Any], run: _Run) -> None:
        scope = RerunScope(
            str(case["id"]), run_id, version, on_start=lambda tid: collector.started(run, tid)
        )  # fmt: skip
        token = rerun_scope_var.set(scope)
        try:
            _call(fn, case["input"], timeout)
            done.put((case["id"], None))
        except BaseException as exc:  # noqa: BLE001 - the case fails, never the run
            done.put((case["id"], exc))
        finally:
            rerun_scope_var.reset(token)

    def end(case: dict[str, Any], run: _Run, exc: BaseException | None, timed_out: bool = False) -> None:
        after = _after(run, exc, timed_out, timeout)
        result = report.add(case, after)
        if progress is not None:
            try:
                progress(len(report.cases), total, result)
            except Exception:  # noqa: BLE001, S110 - a progress display must not stop the run
                pass

    while waiting or running:
        while waiting and len(running) < concurrency:
            case = waiting.pop()
            run = _Run()
            deadline = None if timeout is None else time.monotonic() + timeout + 1.0
            running[case["id"]] = (case, run, deadline)
            threading.Thread(target=work, args=(case, run), name=f"rerun-{case['id']}", daemon=True).start()
        try:
            cid, exc = done.get(timeout=0.05)
        except queue.Empty:
            now = time.monotonic()
            for cid2, (case, run, deadline) in list(running.items()):
                if deadline is not None and now > deadline:  # a sync function that does not return
                    del running[cid2]
                    end(case, run, CaseTimeout(f"ran longer than {timeout:g}s"), timed_out=True)
            continue
        if cid in running:
            case, run, _ = running.pop(cid)
            end(case, run, exc, timed_out=isinstance(exc, CaseTimeout))


def _after(run: _Run, exc: BaseException | None, timed_out: bool, timeout: float | None) -> dict[str, Any]:
    """The re-run's outcome: the execution's, else what the call did (no execution recorded)."""
    status, cause = run.status, run.cause
    if timed_out:  # the execution, cancelled (async) or still running (sync), says less than this
        status, cause = FAILED, sc.FailureCause.TIMEOUT.value
    elif status is None:
        status = COMPLETED if exc is None else FAILED
        cause = None if exc is None else sc.FailureCause.ERROR.value
    error = None
    if exc is not None:
        error = f"ran longer than {timeout:g}s" if timed_out and timeout else exc_text(exc)
    elif run.error is not None:
        error = run.error
    return outcome(
        task_id=run.task_id,
        status=status,
        cause=cause,
        runtime=run.runtime,
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        cost=run.cost,
        score=run.score,
        evaluations=run.evaluations,
        error=error,
        output=None if run.output is None else decode(run.output),
        recorded=run.task_id is not None,  # False: the function started no execution
        raised=exc is not None and not timed_out,
    )
