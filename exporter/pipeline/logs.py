"""The library's log events, its rate-limited warnings, and where both go.

One place decides what the library prints (docs/telemetry.md, "Logs"):

- the application configured structlog: events go to structlog's logger `agent_exporter`, and
  that configuration renders them;
- it did not: events go to the stdlib `logging` logger `agent_exporter` (a `NullHandler` on it,
  as the logging HOWTO asks of libraries), so nothing is printed unless the application
  configures logging. The message is `event key=value ...`; the fields are also on the record
  (`extra`), for JSON formatters.

The check is made per event (the application may configure structlog after `configure()`).
Warnings about the library's own work (bad input, export failures, and what the OpenTelemetry
SDK logs about the exporter the library created) take the same path, as `exporter_warning`
events: rate-limited, and silenced by `log_level="off"`. Events carry `trace_id`, `span_id`,
`task_id` and `agent`; `add_trace_context` is a structlog processor for the application's lines.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import trace

from ..content import clean_text
from ..semconv import LOG_EXPORTER_WARNING

LOGGER_NAME = "agent_exporter"

_stdlib = logging.getLogger(LOGGER_NAME)
_stdlib.addHandler(logging.NullHandler())  # never Python's "last resort" handler on stderr

# LogRecord attributes that `extra` must not overwrite (logging raises KeyError on them).
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_QUOTE = re.compile(r'[\s"=\\]')


class _KeyValues:
    """`event key=value ...`, formatted only if a handler asks for the message."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        try:
            return " ".join([self.event, *(f"{k}={_value(v)}" for k, v in self.fields.items() if v is not None)])
        except Exception:  # noqa: BLE001 - a handler formatting our record must never fail
            return self.event


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v if v and not _QUOTE.search(v) else json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool | int | float):
        return str(v)
    return json.dumps(v, ensure_ascii=False, default=str)


class EventLogger:
    """`debug` / `info` / `warning` / `error(event, **fields)`: to structlog if the application
    configured it, else to stdlib logging (silent unless the application configured that)."""

    __slots__ = ("_structlog",)

    def __init__(self) -> None:
        self._structlog = structlog.get_logger(LOGGER_NAME)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(self._structlog, method)(event, **fields)
        elif _stdlib.isEnabledFor(level):
            extra = {(k if k not in _RESERVED else k + "_"): v for k, v in fields.items()}
            extra["event"] = event
            _stdlib.log(level, _KeyValues(event, fields), extra=extra)


def get_logger() -> EventLogger:
    """The logger the library emits its events on."""
    return EventLogger()


def add_trace_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: add `trace_id` / `span_id` of the current span, if any."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


class RateLimitedWarnings:
    """At most one `exporter_warning` event per key per interval; says how many were suppressed.

    Bad input can arrive at every step of every execution; a log line each time would flood
    the host's logs (the OTel SDK's DuplicateFilter exists for the same reason). `min_level` is
    the configured `log_level`: above WARNING (`error`, `off`) nothing is emitted.
    """

    def __init__(
        self,
        interval: float = 60.0,
        logger: EventLogger | None = None,
        min_level: int = logging.WARNING,
        max_keys: int = 1000,
    ) -> None:
        self.interval = interval
        self.min_level = min_level
        self.max_keys = max_keys
        self._logger = logger or get_logger()
        self._last: dict[str, float] = {}  # key -> when last logged, oldest first
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, key: str, message: str) -> bool:
        """Log `message` unless `key` was logged within the interval; True if logged.

        Keys may quote user values (an unknown trigger's name): past `max_keys`, keys older than
        the interval are forgotten, and while all are recent new keys share one overflow key, so
        a stream of new values neither grows the table nor floods the log."""
        if self.min_level > logging.WARNING:
            return False
        now = time.monotonic()
        with self._lock:
            if key not in self._last and len(self._last) >= self.max_keys:
                self._prune(now)
                if len(self._last) >= self.max_keys:
                    key = _OVERFLOW_KEY
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last.pop(key, None)  # re-inserted at the end: the table stays oldest first
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} similar warnings suppressed)"
        try:
            message = clean_text(message, 2000)  # messages quote user values: mask, bound
            self._logger.warning(LOG_EXPORTER_WARNING, detail=message)
        except Exception:  # noqa: BLE001 - a broken log handler must not reach the agent
            pass
        return True

    def _prune(self, now: float) -> None:
        """Under the lock: forget keys last logged longer than the interval ago (oldest first)."""
        stale = []
        for key, at in self._last.items():
            if now - at < self.interval:
                break
            stale.append(key)
        for key in stale:
            del self._last[key]
            self._suppressed.pop(key, None)

    @property
    def keys(self) -> int:
        """Keys remembered now (bounded by `max_keys` + 1)."""
        return len(self._last)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (a fork while another thread held it would deadlock)."""
        self._lock = threading.Lock()


_OVERFLOW_KEY = "warnings_over_key_budget"


# --------------------------------------------------------------------------- the SDK's own logs
#
# The OTLP exporters log through module-level stdlib loggers shared by every exporter in the
# process; unconfigured, Python's last-resort handler prints their WARNINGs on stderr. A filter on
# those loggers takes the records made while the library's own exporter works (a thread-local
# says so) to the library's warnings, and leaves every other record, the application's
# exporters' included, as it was.

_SDK_LOGGER_PREFIXES = ("opentelemetry", "urllib3", "requests", "grpc")
_SDK_LOGGERS = (  # the ones that speak during an export, created here in case not imported yet
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.common._internal",
)
_scope = threading.local()


class _ToLibraryWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        warnings: RateLimitedWarnings | None = getattr(_scope, "warnings", None)
        if warnings is None:
            return True  # not the library's exporter at work: not ours to touch
        if record.levelno < logging.WARNING:
            return True  # printed only where the application turned these loggers on
        _scope.warnings = None  # no re-entry if a handler logs to the SDK again
        try:
            warnings.warn(f"otel:{record.name}:{record.msg}", f"span export: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a bad record must not break the export thread
            pass
        finally:
            _scope.warnings = warnings
        return False


_FILTER = _ToLibraryWarnings()


def _install_filter() -> None:
    names = set(_SDK_LOGGERS)
    names.update(n for n in list(logging.root.manager.loggerDict) if n.startswith(_SDK_LOGGER_PREFIXES))
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


@contextmanager
def _routing(warnings: RateLimitedWarnings) -> Iterator[None]:
    previous = getattr(_scope, "warnings", None)
    _scope.warnings = warnings
    try:
        yield
    finally:
        _scope.warnings = previous


def own_exporter_logs(span_exporter: Any, warnings: RateLimitedWarnings) -> None:
    """For an exporter the library created: what the SDK logs while it works is the library's."""
    _install_filter()
    for name in ("export", "force_flush", "shutdown"):
        method = getattr(span_exporter, name, None)
        if callable(method):
            setattr(span_exporter, name, _scoped(method, warnings))


def _scoped(method: Callable[..., Any], warnings: RateLimitedWarnings) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with _routing(warnings):
            return method(*args, **kwargs)

    return call
