"""structlog events that carry the trace id, and the library's own rate-limited warnings.

The library logs through a structlog logger named `agent_exporter`, so the application's own
structlog configuration decides the rendering. Events carry `trace_id`, `span_id`, `task_id`,
`agent` (and `step`) so that a log line leads to its trace. `add_trace_context` is a structlog
processor for the application's own log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from .content import clean_text

LOGGER_NAME = "agent_exporter"

_internal = logging.getLogger(LOGGER_NAME)


def get_logger() -> Any:
    """The structlog logger the library emits its events on."""
    return structlog.get_logger(LOGGER_NAME)


def add_trace_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: add `trace_id` / `span_id` of the current span, if any."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


class RateLimitedWarnings:
    """At most one WARNING per key per interval; says how many were suppressed meanwhile.

    Bad input can arrive at every step of every execution; a log line each time would flood
    the host's logs (the OTel SDK's DuplicateFilter exists for the same reason).
    """

    def __init__(self, interval: float = 60.0, logger: logging.Logger | None = None) -> None:
        self.interval = interval
        self._logger = logger or _internal
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str) -> bool:
        """Log `message` unless `key` was logged within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            if len(self._last) > 1000:  # keys are reasons, bounded; this is a backstop
                self._last.clear()
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} similar warnings suppressed)"
        try:
            message = clean_text(message, 2000)  # messages quote user values: mask, bound
            self._logger.warning("agent-exporter: %s", message)
        except Exception:  # noqa: BLE001 - a broken log handler must not reach the agent
            pass
        return True
