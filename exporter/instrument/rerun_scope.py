"""The re-run scope: inside `exporter.rerun()` / `agent-exporter rerun`, what an execution is.

The runner sets `rerun_scope_var` around each case; `Execution` reads it once, when it is created:
its trigger becomes `rerun`, its task id one derived from the case id (so it never merges into the
original row), its version the one the re-run names. These win over what the agent's own code
passes to `execution()`: production code names production triggers and task ids, and a re-run must
not be counted as one of them. A resumed execution (`resume_execution()`) keeps its carrier's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RerunScope:
    """One case being re-run: its id, the re-run's id and version, the executions started in it."""

    case_id: str
    run_id: str
    version: str | None = None
    # Told each new task id (the runner maps it back to this case); called on the agent's thread.
    on_start: Callable[[str], None] | None = None
    started: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_task_id(self) -> str:
        """`<case id>~rerun-<run id>` for the first execution of the case, then `-2`, `-3`, ..."""
        with self._lock:
            n = len(self.started)
            task_id = f"{self.case_id}~rerun-{self.run_id}" + (f"-{n + 1}" if n else "")
            self.started.append(task_id)
        if self.on_start is not None:
            self.on_start(task_id)
        return task_id


rerun_scope_var: ContextVar[RerunScope | None] = ContextVar("agent_exporter_rerun_scope", default=None)
