"""`configure()`: settings, objectives, the metrics endpoint; `reset()` for tests.

Unconfigured, the library is a no-op: `execution()` hands back a shared do-nothing object.
A bad argument here is a programmer's error and raises `ValueError` at once; everything met
while an agent runs is a warning and a documented fallback instead.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import socket
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeGuard
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from . import semconv as sc
from ._version import __version__ as __version__  # re-exported by exporter/__init__.py
from .content import DEFAULT_MAX_BYTES, Redactor
from .exposition import make_metrics_app, start_metrics_server
from .logs import RateLimitedWarnings, get_logger
from .metrics import DEFAULT_MAX_AGENTS, DEFAULT_MAX_LABEL_VALUES, Metrics, multiprocess_enabled
from .semconv import DropReason, StepStatus
from .tracing import DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, TracingSetup, setup_tracing

LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "off": 100}


@dataclass(frozen=True)
class Objectives:
    """An agent's targets; exported as `agent_objective` and read by the alert rules."""

    completion_ratio: float = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_COMPLETION_RATIO]
    max_runtime_seconds: float = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MAX_RUNTIME_SECONDS]
    min_evaluation_score: float = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MIN_EVALUATION_SCORE]
    max_tool_error_ratio: float = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MAX_TOOL_ERROR_RATIO]
    max_pending_seconds: float = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MAX_PENDING_SECONDS]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"objective {f.name} must be a finite number, got {v!r}")
            if f.name.endswith(("_ratio", "_score")) and not 0 <= v <= 1:
                raise ValueError(f"objective {f.name} is a ratio in [0, 1], got {v!r}")
            if f.name.endswith("_seconds") and v <= 0:
                raise ValueError(f"objective {f.name} must be > 0 seconds, got {v!r}")

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def parse(cls, agent: str, value: Objectives | Mapping[str, float]) -> Objectives:
        if isinstance(value, Objectives):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"objectives for {agent!r} must be a mapping or Objectives, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown objective(s) {sorted(map(str, unknown))} for {agent!r}; known: {sorted(known)}")
        return cls(**dict(value))


@dataclass(frozen=True)
class Settings:
    """Everything `configure()` decided, read by executions on the hot path."""

    service_name: str
    capture_content: bool
    redact: Redactor | None
    max_content_bytes: int
    max_duration: float | None
    review_threshold: float | None
    evaluation_fail_status: str
    log_level: int
    objectives: Mapping[str, Objectives] = field(default_factory=dict)

    def objectives_for(self, agent: str) -> Objectives:
        return self.objectives.get(agent) or self.objectives.get("*") or _DEFAULT_OBJECTIVES


_DEFAULT_OBJECTIVES = Objectives()


@dataclass
class State:
    """The live configuration: settings, metric families, tracer, server."""

    settings: Settings
    metrics: Metrics
    tracing: TracingSetup
    log: Any
    server: Any = None
    server_thread: Any = None
    warnings: RateLimitedWarnings = field(default_factory=RateLimitedWarnings)

    def drop(self, reason: DropReason, message: str, amount: float = 1.0) -> None:
        self.metrics.drop(reason, message, amount)

    def logs(self, level: int) -> bool:
        return level >= self.settings.log_level


_state: State | None = None
_lock = threading.Lock()


def current() -> State | None:
    """The live state, or None when unconfigured (the no-op path)."""
    return _state


# --------------------------------------------------------------------------------------------
# Argument checks: one small check per keyword, run on every configure() call (the first or not)
# --------------------------------------------------------------------------------------------

Check = Callable[[str, Any], None]


def _fail(name: str, want: str, value: object) -> NoReturn:
    raise ValueError(f"{name} must be {want}, got {value!r}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        _fail(name, "True or False", value)


def _text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        _fail(name, "a non-empty string", value)


def _is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float; True/False are flags, not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(low: int, high: int | None = None) -> Check:
    want = f"an int in {low}..{high}" if high is not None else f"an int >= {low}"

    def check(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            _fail(name, want, value)

    return check


def _seconds(*, zero_ok: bool) -> Check:
    want = "a finite number of seconds " + (">= 0" if zero_ok else "> 0")

    def check(name: str, value: object) -> None:
        if not _is_number(value) or value < 0 or (value == 0 and not zero_ok):
            _fail(name, want, value)

    return check


def _ratio(name: str, value: object) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        _fail(name, "a number in [0, 1]", value)


def _one_of(*choices: str) -> Check:
    def check(name: str, value: object) -> None:
        if not isinstance(value, str) or value.lower() not in choices:
            _fail(name, f"one of {list(choices)} (any case)", value)

    return check


def _http_url(name: str, value: object) -> None:
    want = "an http:// or https:// URL with a host, like http://localhost:4318"
    if not isinstance(value, str):
        _fail(name, want, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0..65535
    except ValueError:
        _fail(name, want, value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(name, want, value)


def _path(name: str, value: object) -> None:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        _fail(name, "a file path", value)


def _instance(cls: type, want: str) -> Check:
    def check(name: str, value: object) -> None:
        if not isinstance(value, cls):
            _fail(name, want, value)

    return check


def _callable(name: str, value: object) -> None:
    if not callable(value):
        _fail(name, "a callable str -> str", value)


def _objectives(name: str, value: object) -> None:
    if not isinstance(value, Mapping):
        _fail(name, "a mapping of agent name (or '*') to Objectives or a mapping", value)
    for agent, objectives in value.items():
        _text(f"{name} agent name", agent)
        Objectives.parse(agent, objectives)


def _optional(check: Check) -> Check:
    def optional(name: str, value: object) -> None:
        if value is not None:
            check(name, value)

    return optional


_CHECKS: Mapping[str, Check] = {
    "service_name": _text,
    "metrics_port": _optional(_int_in(0, 65535)),
    "metrics_addr": _text,
    "otlp_endpoint": _optional(_http_url),
    "objectives": _optional(_objectives),
    "capture_content": _flag,
    "redact": _optional(_callable),
    "max_content_bytes": _int_in(64),
    "max_duration": _optional(_seconds(zero_ok=False)),
    "review_threshold": _optional(_ratio),
    "evaluation_fail_status": _one_of(StepStatus.FAILED.value, StepStatus.NEEDS_REVIEW.value),
    "log_level": _one_of(*LOG_LEVELS),
    "registry": _optional(_instance(CollectorRegistry, "a prometheus_client CollectorRegistry")),
    "tracer_provider": _optional(_instance(trace.TracerProvider, "an OpenTelemetry TracerProvider")),
    "span_exporter": _optional(_instance(SpanExporter, "an OpenTelemetry SpanExporter")),
    "tracing": _flag,
    "set_global_tracer_provider": _flag,
    "export_timeout": _seconds(zero_ok=False),
    "shutdown_timeout": _seconds(zero_ok=True),
    "max_label_values": _int_in(1),
    "max_agents": _int_in(1),
    "metrics_certfile": _optional(_path),
    "metrics_keyfile": _optional(_path),
    "metrics_client_cafile": _optional(_path),
    "metrics_client_auth_required": _flag,
}


def check_arguments(args: Mapping[str, Any]) -> None:
    """ValueError naming the first bad keyword of a configure() call; each keyword has its own check."""
    for name, value in args.items():
        _CHECKS[name](name, value)  # a keyword without a check is a KeyError here, in every test
    if (args["metrics_certfile"] is None) != (args["metrics_keyfile"] is None):
        raise ValueError("metrics_certfile and metrics_keyfile go together")
    # asking for client certificates without TLS would silently serve plain HTTP
    if args["metrics_certfile"] is None and (
        args["metrics_client_cafile"] is not None or args["metrics_client_auth_required"]
    ):
        raise ValueError(
            "metrics_client_cafile / metrics_client_auth_required need TLS: pass metrics_certfile and metrics_keyfile"
        )


def configure(
    service_name: str = "agent",
    *,
    metrics_port: int | None = 9464,
    metrics_addr: str = "0.0.0.0",
    otlp_endpoint: str | None = None,
    objectives: Mapping[str, Objectives | Mapping[str, float]] | None = None,
    capture_content: bool = True,
    redact: Redactor | None = None,
    max_content_bytes: int = DEFAULT_MAX_BYTES,
    max_duration: float | None = None,
    review_threshold: float | None = None,
    evaluation_fail_status: str = StepStatus.FAILED.value,
    log_level: str = "info",
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    span_exporter: Any = None,
    tracing: bool = True,
    set_global_tracer_provider: bool = True,
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
    max_agents: int = DEFAULT_MAX_AGENTS,
    metrics_certfile: str | None = None,
    metrics_keyfile: str | None = None,
    metrics_client_cafile: str | None = None,
    metrics_client_auth_required: bool = False,
) -> State:
    """Turn the library on. Call once at start-up; a second call checks its arguments, warns, changes nothing.

    `metrics_port=None` starts no server (mount `metrics_app()` or read `registry` yourself).
    Traces go to `otlp_endpoint`, else to what the standard `OTEL_EXPORTER_OTLP_*` variables
    say; with neither, spans are made (their ids reach logs and exemplars) but not exported.
    An application's own TracerProvider is reused, never replaced.
    """
    global _state
    check_arguments(locals())  # on every call, so a bad argument never passes silently
    with _lock:
        if _state is not None:
            warnings.warn(
                "agent_exporter.configure() called again; the first configuration stays "
                "(call exporter.reset() first to reconfigure)",
                RuntimeWarning,
                stacklevel=2,
            )
            return _state
        parsed = {str(a): Objectives.parse(a, o) for a, o in (objectives or {}).items()}

        settings = Settings(
            service_name=service_name,
            capture_content=bool(capture_content),
            redact=redact,
            max_content_bytes=max_content_bytes,
            max_duration=float(max_duration) if max_duration else None,
            review_threshold=review_threshold,
            evaluation_fail_status=evaluation_fail_status.lower(),
            log_level=LOG_LEVELS[log_level.lower()],
            objectives=parsed,
        )
        warn = RateLimitedWarnings()
        metrics = Metrics(registry, warnings=warn, max_label_values=max_label_values, max_agents=max_agents)
        metrics.objective_source = lambda agent: settings.objectives_for(agent).as_dict()
        for agent in parsed:
            if agent != "*":
                metrics.agent_label(agent)

        def on_drop(reason: DropReason, message: str, amount: int) -> None:
            metrics.drop(reason, message, amount)

        setup = setup_tracing(
            service_name=service_name,
            enabled=tracing,
            tracer_provider=tracer_provider,
            otlp_endpoint=otlp_endpoint,
            span_exporter=span_exporter,
            export_timeout=export_timeout,
            shutdown_timeout=shutdown_timeout,
            set_global=set_global_tracer_provider,
            on_drop=on_drop,
            on_warn=lambda m: warn.warn("tracing", m),
            version=__version__,
        )
        state = State(settings=settings, metrics=metrics, tracing=setup, log=get_logger(), warnings=warn)
        if metrics_port is not None:
            try:
                state.server, state.server_thread = start_metrics_server(
                    metrics_port,
                    addr=metrics_addr,
                    registry=_serving_registry(metrics.registry),
                    certfile=metrics_certfile,
                    keyfile=metrics_keyfile,
                    client_cafile=metrics_client_cafile,
                    client_auth_required=metrics_client_auth_required,
                )
            except OSError as exc:
                if setup.processor is not None:
                    setup.processor.shutdown()
                hint = _bind_hint(exc, tls=metrics_certfile is not None)
                raise ValueError(f"cannot serve /metrics on {metrics_addr}:{metrics_port}: {exc} ({hint})") from exc
        _state = state
        return state


def _bind_hint(exc: OSError, *, tls: bool) -> str:
    """What to change when /metrics cannot be served: the address, the port, or the TLS files."""
    if isinstance(exc, socket.gaierror):
        return "metrics_addr is neither an IP address nor a host name that resolves: pass e.g. 127.0.0.1 or 0.0.0.0"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "metrics_addr is not an address of this machine: pass one it has, e.g. 127.0.0.1 or 0.0.0.0"
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        return "port in use or not allowed? pass another metrics_port, or metrics_port=None"
    if tls:  # e.g. a certificate file that cannot be read: name the files, not the port
        return "check metrics_certfile, metrics_keyfile and metrics_client_cafile"
    return "check metrics_addr and metrics_port"


def _serving_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """In multiprocess mode /metrics aggregates every worker's files, not one registry."""
    if not multiprocess_enabled():
        return registry
    from prometheus_client import multiprocess

    agg = CollectorRegistry()
    multiprocess.MultiProcessCollector(agg)  # type: ignore[no-untyped-call]
    return agg


def metrics_app() -> Callable[..., Any]:
    """A WSGI app serving /metrics (text or OpenMetrics, by the scraper's Accept header).

    prometheus_client's `make_wsgi_app`, with OpenMetrics rendered by `exposition.generate_openmetrics`
    (same bytes, faster)."""
    state = _state
    registry = _serving_registry(state.metrics.registry) if state else CollectorRegistry()
    return make_metrics_app(registry)


def registry() -> CollectorRegistry | None:
    """The registry the library's metrics live in (None when unconfigured)."""
    return _state.metrics.registry if _state else None


def shutdown(timeout: float | None = None) -> None:
    """Flush spans (bounded by the shutdown timeout) and stop the metrics server."""
    state = _state
    if state is None:
        return
    proc = state.tracing.processor
    if proc is not None:
        try:
            if timeout is not None:
                proc.force_flush(int(timeout * 1000))
            proc.shutdown()
        except Exception:  # noqa: BLE001 - shutdown must not raise into the host
            pass
    if state.server is not None:
        try:
            state.server.shutdown()
            state.server.server_close()
        except Exception:  # noqa: BLE001
            pass
        state.server = None


def reset() -> None:
    """Forget the configuration (for tests): stop the server and the span worker."""
    global _state
    with _lock:
        shutdown()
        _state = None
