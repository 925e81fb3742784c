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
