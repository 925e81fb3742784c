"""The module functions agent code calls: `execution()`, `resume_execution()`, the `step` decorator.

Each returns a real object when the library is configured and a no-op one otherwise (or when
the object could not be built: that is counted, never raised).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from . import _config
from . import semconv as sc
from .instrument.carrier import parse_carrier
from .instrument.execution import Execution
from .instrument.noop import NOOP_EXECUTION, NOOP_STEP, NoopExecution, NoopStep
from .instrument.recording import current_execution_var, current_step_var, internal_error
from .instrument.steps import Step
from .semconv import DropReason
from .tasks.query import carrier_of, get_task

F = TypeVar("F", bound=Callable[..., Any])


def execution(
    agent: Any,
    trigger: Any = "manual",
    task_id: Any = None,
    description: Any = None,
    *,
    pending: str | None = None,
    max_duration: float | None = None,
    version: Any = None,
    steps: int | None = None,
) -> Execution | NoopExecution:
    """A task execution, as a context manager (`with` or `async with`).

    `pending="queued"` or `"approval"` starts it waiting (time pending is not runtime);
    `max_duration` (seconds, default from `configure()`) fails it with cause `timeout`;
    `version` (e.g. a git sha of the workflow or prompt; default `configure(agent_version=)`)
    labels the per-version series, so two versions can be compared; `steps` (how many steps the
    execution will take, when known) lets the task list show "step k of n".
    Unconfigured, this returns a shared no-op object.
    """
    state = _config.current()
    if state is None:
        return NOOP_EXECUTION
    try:
        return Execution(
            state, agent, trigger, task_id, description, pending=pending, max_duration=max_duration, version=version,
            steps=steps,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        internal_error(state, "execution()", exc)
        return NOOP_EXECUTION


def start_execution(
    agent: Any, trigger: Any = "manual", task_id: Any = None, description: Any = None, **kw: Any
) -> Execution | NoopExecution:
    """`execution(...)` already entered, for code that cannot use `with`; call `run.end()`."""
    return execution(agent, trigger, task_id, description, **kw).__enter__()


def resume_execution(carrier: Any, *, max_duration: float | None = None) -> Execution | NoopExecution:
    """Continue, in the same trace, an execution that another process `suspend()`ed.

    A damaged carrier is counted (`invalid_carrier`) and every field of it that validates is
    kept: a broken `traceparent` starts a new trace but keeps the agent, trigger, task id and
    counts; a field that does not validate takes its default (agent and trigger `unknown`, a
    new task id, `started` false so that a start is counted, the version this process runs).
    """
    state = _config.current()
    if state is None:
        return NOOP_EXECUTION
    try:
        c, bad = parse_carrier(carrier)
        if bad:
            where = "the same trace" if "traceparent" in c else "a new trace"
            state.drop(
                DropReason.INVALID_CARRIER,
                f"resume_execution(): carrier field(s) {', '.join(bad)} missing or invalid; "
                f"kept the rest, continuing in {where}",
            )
        md = max_duration if max_duration is not None else c.get("max_duration")
        return Execution(
            state,
            c.get("agent", sc.UNKNOWN_LABEL_VALUE),
            c.get("trigger", sc.UNKNOWN_LABEL_VALUE),
            c.get("task_id"),
            c.get("description"),
            max_duration=md,
            version=c.get("version"),
            steps=c.get("steps_total"),
            _resume=c,
        )
    except Exception as exc:  # noqa: BLE001
        internal_error(state, "resume_execution()", exc)
        return NOOP_EXECUTION


def cancel_task(task: Any, message: str | None = "abandoned while waiting") -> bool:
    """Close (cancel) an execution that was suspended and will never be resumed.

    `task` is its carrier, or its task id when the carrier was lost (then the task store,
    `configure(task_store=...)`, supplies what the carrier held; the read waits at most a few
    seconds). Counted like any cancellation, in this process's metrics and in the store. True if
    an execution was closed; False (never an exception) if it was not waiting or not found.
    """
    state = _config.current()
    if state is None:
        return False
    try:
        carrier = task
        if not isinstance(task, Mapping):
            if state.tasks is None:
                state.warnings.warn("cancel_task", "cancel_task(task_id) needs configure(task_store=...)")
                return False
            row = state.tasks.read(lambda store: get_task(store, str(task)))
            if row is None or row["status"] != sc.ExecutionStatus.PENDING.value:
                return False
            carrier = carrier_of(row)
        run = resume_execution(carrier)
        if isinstance(run, NoopExecution):
            return False
        with run:
            run.cancel(message)
        if state.tasks is not None and not isinstance(task, Mapping):
            state.tasks.flush(5.0)  # the next look-up of this task id sees it closed
        return True
    except Exception as exc:  # noqa: BLE001
        internal_error(state, "cancel_task()", exc)
        return False


def current_execution() -> Execution | NoopExecution:
    """The execution running in this context (a no-op object if none)."""
    return current_execution_var.get() or NOOP_EXECUTION


def current_step() -> Step | NoopStep:
    """The step running in this context (a no-op object if none)."""
    return current_step_var.get() or NOOP_STEP


def step(name: str | None = None, tool: str | None = None) -> Callable[[F], F]:
    """Decorator: run a function (sync or async) as a step of the current execution.

    Outside an execution the function simply runs.
    """

    def decorate(fn: F) -> F:
        step_name = name or fn.__name__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = current_execution_var.get()
                if run is None:
                    return await fn(*args, **kwargs)
                async with run.step(step_name, tool=tool):
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = current_execution_var.get()
            if run is None:
                return fn(*args, **kwargs)
            with run.step(step_name, tool=tool):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
