"""`configure()`: settings, objectives, the metrics endpoint; `reset()` for tests.

Unconfigured, the library is a no-op: `execution()` hands back a shared do-nothing object.
A bad argument here is a programmer's error and raises `ValueError` at once; everything met
while an agent runs is a warning and a documented fallback instead.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from . import _checks as c
from . import semconv as sc
from ._version import __version__ as __version__  # re-exported by exporter/__init__.py
from .bridge import install as install_bridge
from .content import DEFAULT_MAX_BYTES, Redactor
from .exposition import make_metrics_app, start_metrics_server
from .logs import RateLimitedWarnings, get_logger, own_exporter_logs
from .metrics import DEFAULT_MAX_AGENTS, DEFAULT_MAX_LABEL_VALUES, Metrics, multiprocess_enabled
from .recorder import Recorder
from .sampling import Sampling, activate, holders
from .semconv import DropReason, StepStatus
from .tasks.backend import StoreError, parse_url
from .tasks.sink import TaskSink
from .tracing import DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, TracingSetup, setup_tracing

# The stdlib's levels, which the recorder compares against; "off" is above them all.
LOG_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "off": 100,
}  # fmt: skip


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
    agent_version: str | None = None  # the version of executions that name none

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
    bridge: Any = None  # the span bridge, with span_metrics=True
    sampling: Sampling | None = None  # which executions' traces are kept (holds spans if sample_healthy < 1)
    tasks: TaskSink | None = None  # the task store's writer, with task_store=
    server_thread: Any = None
    warnings: RateLimitedWarnings = field(default_factory=RateLimitedWarnings)

    def __post_init__(self) -> None:
        # The one consumer of events (native API, span bridge): metrics and log events.
        self.recorder = Recorder(self.metrics, self.log, self.settings.log_level)

    def drop(self, reason: DropReason, message: str, amount: float = 1.0) -> None:
        self.metrics.drop(reason, message, amount)


_state: State | None = None
_lock = threading.Lock()


def current() -> State | None:
    """The live state, or None when unconfigured (the no-op path)."""
    return _state


# configure()'s keywords, each with its own check (exporter/_checks.py), run on every call


def _objectives(name: str, value: object) -> None:
    if not isinstance(value, Mapping):
        c.fail(name, "a mapping of agent name (or '*') to Objectives or a mapping", value)
    for agent, objectives in value.items():
        c.text(f"{name} agent name", agent)
        Objectives.parse(agent, objectives)


def _task_store(name: str, value: object) -> None:
    if not isinstance(value, str):
        c.fail(name, "a URL: sqlite:///path/tasks.db or postgresql://user@host:port/db", value)
    try:
        parse_url(value)
    except StoreError as exc:
        raise ValueError(str(exc)) from None


_CHECKS: Mapping[str, c.Check] = {
    "service_name": c.text,
    "agent_version": c.optional(c.text),
    "metrics_port": c.optional(c.int_in(0, 65535)),
    "metrics_addr": c.text,
    "otlp_endpoint": c.optional(c.http_url),
    "objectives": c.optional(_objectives),
    "capture_content": c.flag,
    "redact": c.optional(c.is_callable),
    "max_content_bytes": c.int_in(64),
    "max_duration": c.optional(c.seconds(zero_ok=False)),
    "review_threshold": c.optional(c.ratio),
    "evaluation_fail_status": c.one_of(StepStatus.FAILED.value, StepStatus.NEEDS_REVIEW.value),
    "log_level": c.one_of(*LOG_LEVELS),
    "registry": c.optional(c.instance(CollectorRegistry, "a prometheus_client CollectorRegistry")),
    "tracer_provider": c.optional(c.instance(trace.TracerProvider, "an OpenTelemetry TracerProvider")),
    "span_exporter": c.optional(c.instance(SpanExporter, "an OpenTelemetry SpanExporter")),
    "tracing": c.flag,
    "set_global_tracer_provider": c.flag,
    "span_metrics": c.flag,
    "sample_healthy": c.ratio,
    "export_timeout": c.seconds(zero_ok=False),
    "shutdown_timeout": c.seconds(zero_ok=True),
    "max_label_values": c.int_in(1),
    "max_agents": c.int_in(1),
    "metrics_certfile": c.optional(c.path),
    "metrics_keyfile": c.optional(c.path),
    "metrics_client_cafile": c.optional(c.path),
    "metrics_client_auth_required": c.flag,
    "task_store": c.optional(_task_store),
    "task_store_retention_days": c.seconds(zero_ok=True),
    "task_store_refresh": c.seconds(zero_ok=False),
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
    agent_version: str | None = None,
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
    set_global_tracer_provider: bool = False,
    span_metrics: bool = False,
    sample_healthy: float = 1.0,
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
    max_agents: int = DEFAULT_MAX_AGENTS,
    metrics_certfile: str | None = None,
    metrics_keyfile: str | None = None,
    metrics_client_cafile: str | None = None,
    metrics_client_auth_required: bool = False,
    task_store: str | None = None,
    task_store_retention_days: float = 7.0,
    task_store_refresh: float = 15.0,
) -> State:
    """Turn the library on. Call once at start-up; a second call checks its arguments, warns, changes nothing.

    `metrics_port=None` starts no server (mount `metrics_app()` or read `registry` yourself).
    Traces go to `otlp_endpoint` (from a provider of the library's own), else where the
    application's global TracerProvider sends its spans, set before or after this call, else to
    what the standard `OTEL_EXPORTER_OTLP_*` variables say; with none, spans are made (their ids
    reach logs and exemplars) but not exported. The application's provider is never added to or
    replaced.

    `agent_version` (a git sha, a release) is the version of every execution that names none
    (`execution(version=)`): the `version` label of the per-version series and `gen_ai.agent.version`.

    `sample_healthy` below 1 keeps every failed, slow or flagged execution's trace and that fraction
    of the healthy ones (exporter/sampling.py); metrics and logs stay exact.

    `task_store` (`sqlite:///path/tasks.db` or `postgresql://user@host:port/db`) records every
    execution in a database, written off the agent's thread (exporter/tasks/); rows older than
    `task_store_retention_days` are purged; the waiting gauges are read from it every
    `task_store_refresh` seconds.
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
            agent_version=agent_version,
        )
        warn = RateLimitedWarnings(min_level=settings.log_level)  # log_level='off' silences warnings too
        metrics = Metrics(registry, warnings=warn, max_label_values=max_label_values, max_agents=max_agents)
        metrics.objective_source = lambda agent: settings.objectives_for(agent).as_dict()
        for agent in parsed:
            if agent != "*":
                metrics.agent_label(metrics.name(agent, "agent name"))

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
            sample_healthy=sample_healthy,
        )
        if span_exporter is None and setup.processor is not None:
            own_exporter_logs(setup.processor.exporter, warn)  # the library built it: its SDK logs are ours
        state = State(settings=settings, metrics=metrics, tracing=setup, log=get_logger(), warnings=warn)
        if tracing:  # every execution's trace decision is counted; spans are held only below 1
            decisions = metrics.child

            def count(decision: str, reason: str) -> None:
                decisions(sc.SAMPLING_DECISIONS, decision, reason).inc()

            state.sampling = Sampling(float(sample_healthy), on_drop, count)
            activate(state.sampling)
            if sample_healthy < 1 and setup.processor is None and not holders():
                warn.warn(
                    "sampling",
                    "sample_healthy < 1 holds spans only in the library's own export (otlp_endpoint= or "
                    "span_exporter=) or in an exporter.SamplingSpanProcessor around your export processor; "
                    "with neither, every trace is kept",
                )
        if task_store is not None:  # the task list: a second consumer of every event
            state.tasks = TaskSink(
                task_store, metrics, retention_days=task_store_retention_days, refresh_interval=task_store_refresh
            )
            state.recorder.tasks = state.tasks
        if span_metrics:  # other instrumentations' spans become the same metrics and log events
            version = None if agent_version is None else metrics.name(agent_version, "agent version")
            state.bridge = install_bridge(
                setup, state.recorder, metrics.drop, exemplars=metrics.exemplars, version=version
            )
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
                setup.shutdown()
                if state.tasks is not None:
                    state.tasks.close(0.0)
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


def flush(timeout: float | None = None) -> bool:
    """Export the spans made so far, waiting at most `timeout` seconds; True if they all arrived.

    For the end of a short-lived process, a serverless invocation or a task (metrics need no
    flush: Prometheus scrapes them, and multiprocess files are written as they change). The
    default timeout is `configure(export_timeout=)`. Unconfigured: True. Never raises.
    """
    state = _state
    if state is None:
        return True
    try:
        tracing = state.tracing
        seconds = tracing.flush_timeout if timeout is None else float(timeout)
        seconds = 0.0 if math.isnan(seconds) else min(max(seconds, 0.0), 3600.0)
        deadline = time.monotonic() + seconds
        ok = tracing.flush(seconds)
        if state.tasks is not None:
            ok = state.tasks.flush(max(0.0, deadline - time.monotonic())) and ok
        return ok
    except Exception:  # noqa: BLE001 - flushing must not raise into the host
        return False


def shutdown(timeout: float | None = None) -> None:
    """Flush spans (bounded by the shutdown timeout), end the tracing the library made, stop the server."""
    state = _state
    if state is None:
        return
    if state.bridge is not None:
        state.bridge.shutdown()  # it stays in the provider it was added to, quiet from now on
    try:
        state.tracing.shutdown(timeout)
    except Exception:  # noqa: BLE001 - shutdown must not raise into the host
        pass
    if state.tasks is not None:
        try:
            state.tasks.close(DEFAULT_SHUTDOWN_TIMEOUT if timeout is None else timeout)
        except Exception:  # noqa: BLE001
            pass
        state.tasks = None
    if state.server is not None:
        try:
            state.server.shutdown()
            state.server.server_close()
        except Exception:  # noqa: BLE001
            pass
        state.server = None


def reset() -> None:
    """Forget the configuration (for tests): shut down what the library started, and only that."""
    global _state
    with _lock:
        shutdown()
        activate(None)
        _state = None
