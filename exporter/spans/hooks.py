"""Framework hooks for what spans do not say: an OpenAI Agents SDK run that stopped for approval.

The OpenAI Agents SDK ends a run whose tool `needs_approval` like any other run (its spans all
OK) and says so only in what the run returns (`result.interruptions`); the resumed run,
`Runner.run(agent, state)`, continues the SDK trace without starting it again, so OpenInference's
instrumentor emits no span for it. The hook wraps the SDK's default runner (`agents.run.
set_default_agent_runner`, which the SDK marks experimental: its presence is checked, and without it
nothing is hooked): around each `run` / `run_sync` it sets a `waits.Hold`, so the span bridge keeps
the end of the executions the run's spans make until the run returns, then releases it as a wait
when `result.interruptions` is not empty. A resumed run (its input a `RunState`) that made no
execution from spans, inside `exporter.task(task_id=)`, is recorded from the hook: started (the
resume of the wait), finished with its status and wall time. Its tool calls and tokens are not
derived (no span says them). `run_streamed` passes through unhooked.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import semconv as sc
from ..pipeline.events import Event, ExecutionFinished, ExecutionRef, ExecutionStarted, ExecutionSuspended
from ..semconv import PendingReason
from .waits import Hold, Waits, hold_var

_APPROVAL = PendingReason.APPROVAL.value


def install(waits: Waits) -> Callable[[], None] | None:
    """Hook the frameworks imported so far; the function that removes the hooks, or None when none was."""
    module = sys.modules.get("agents.run")
    if module is None:
        return None
    get = getattr(module, "get_default_agent_runner", None)
    put = getattr(module, "set_default_agent_runner", None)
    if not callable(get) or not callable(put):
        return None
    inner = get()
    if isinstance(inner, HookedRunner):
        inner = inner.inner  # a runtime's hook left behind (reconfigured): replace it, never stack
    hooked = HookedRunner(inner, waits)
    put(hooked)

    def undo() -> None:
        if get() is hooked:
            put(inner)

    return undo


class HookedRunner:
    """The SDK's runner, with a hold around each run (everything else is the runner's own)."""

    def __init__(self, inner: Any, waits: Waits) -> None:
        self.inner = inner
        self.waits = waits

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def run(self, starting_agent: Any, input: Any, **kwargs: Any) -> Any:
        hold, began = Hold(), time.monotonic()
        token = hold_var.set(hold)
        try:
            result = await self.inner.run(starting_agent, input, **kwargs)
        except BaseException as exc:
            hold_var.reset(token)
            self._ended(hold, starting_agent, input, None, exc, began)
            raise
        hold_var.reset(token)
        self._ended(hold, starting_agent, input, result, None, began)
        return result

    def run_sync(self, starting_agent: Any, input: Any, **kwargs: Any) -> Any:
        hold, began = Hold(), time.monotonic()
        token = hold_var.set(hold)
        try:
            result = self.inner.run_sync(starting_agent, input, **kwargs)
        except BaseException as exc:
            hold_var.reset(token)
            self._ended(hold, starting_agent, input, None, exc, began)
            raise
        hold_var.reset(token)
        self._ended(hold, starting_agent, input, result, None, began)
        return result

    def run_streamed(self, starting_agent: Any, input: Any, **kwargs: Any) -> Any:
        return self.inner.run_streamed(starting_agent, input, **kwargs)

    def _ended(self, hold: Hold, agent: Any, input: Any, result: Any, exc: BaseException | None, began: float) -> None:
        """Release the hold; record a resumed run its spans did not show. Never raises."""
        try:
            waiting = _APPROVAL if result is not None and getattr(result, "interruptions", None) else None
            if hold.release(waiting) or not _is_state(input):
                return
            from .bridge import _task  # the exporter.task() block the run is in

            given = _task.get()
            if given is None or given[1] is None:
                return  # no task id: nothing names the wait this run resumes
            name = getattr(agent, "name", None)
            span_hex = secrets.token_hex(8)
            ref = ExecutionRef(
                name if isinstance(name, str) and name else sc.UNKNOWN_LABEL_VALUE,
                given[0] or sc.UNKNOWN_LABEL_VALUE,
                given[1],
                None,
                span_hex,
            )
            runtime = max(0.0, time.monotonic() - began)
            end: Event
            if waiting is not None:
                end = ExecutionSuspended(ref, waiting, time.time(), None, runtime)
            elif exc is None:
                end = ExecutionFinished(ref, sc.ExecutionStatus.COMPLETED.value, None, runtime, None)
            elif not isinstance(exc, Exception):  # cancelled, interrupted: not the agent's failure
                end = ExecutionFinished(ref, sc.ExecutionStatus.CANCELLED.value, None, runtime, None)
            else:
                cause = sc.FailureCause.ERROR.value
                end = ExecutionFinished(ref, sc.ExecutionStatus.FAILED.value, cause, runtime, None, type(exc).__name__)
            self.waits.record([ExecutionStarted(ref), end])
        except Exception as err:  # noqa: BLE001 - the hook must not break the agent's run
            try:
                self.waits.internal_error(f"OpenAI Agents SDK hook: {err!r}")
            except Exception:  # noqa: BLE001
                pass


def _is_state(value: Any) -> bool:
    """The run's input is an SDK `RunState` (a resume), by its class, without importing the SDK."""
    return any(c.__name__ == "RunState" and c.__module__.startswith("agents") for c in type(value).__mro__)
