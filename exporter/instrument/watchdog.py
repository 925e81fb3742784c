"""The max-duration watchdog: fails executions that run past their deadline, even hung ones."""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .execution import Execution


class Watchdog:
    """One daemon thread that fails executions running past their maximum duration.

    A hung execution never reaches its `__exit__`; without this, the alert on runtime would
    never see it. The thread runs only while some execution has a deadline.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._deadlines: dict[int, tuple[float, weakref.ref[Execution]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, run: Execution, deadline: float) -> None:
        with self._lock:
            self._deadlines[id(run)] = (deadline, weakref.ref(run))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agent-exporter-watchdog", daemon=True)
                self._thread.start()

    def unwatch(self, run: Execution) -> None:
        with self._lock:
            self._deadlines.pop(id(run), None)

    def stop(self) -> None:
        """Forget every deadline; the thread ends at its next wake (shutdown, reset)."""
        with self._lock:
            self._deadlines.clear()

    def after_fork(self) -> None:
        """In a forked child: empty, with a fresh lock and no thread. The parent's executions and
        their deadlines are the parent's: the child must not time them out (nor export their spans)."""
        self._lock = threading.Lock()
        self._deadlines = {}
        self._thread = None

    @property
    def watched(self) -> int:
        return len(self._deadlines)

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                if not self._deadlines:
                    self._thread = None
                    return
                due = [ref for d, ref in self._deadlines.values() if d <= now]
            for ref in due:
                run = ref()
                if run is not None:
                    run._timeout_from_watchdog()


WATCHDOG = Watchdog()
