"""`configure()`: settings, objectives, the metrics endpoint; `reset()` for tests.

Unconfigured, the library is a no-op: `execution()` hands back a shared do-nothing object.
A bad argument here is a programmer's error and raises `ValueError` at once; everything met
while an agent runs is a warning and a documented fallback instead.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from . import _checks as c
from . import _runtime
from . import semconv as sc
from ._runtime import Config, Runtime, serving_registry
from ._version import __version__ as __version__  # re-exported by exporter/__init__.py
from .content import DEFAULT_MAX_BYTES, Redactor
from .pipeline.exposition import make_metrics_app
from .pipeline.metrics import DEFAULT_MAX_AGENTS, DEFAULT_MAX_LABEL_VALUES
from .pricing import parse_overrides
from .semconv import StepStatus
from .spans.mapping import DEFAULT_TRACE_TIMEOUT
from .tasks.backend import StoreError, parse_url
from .traces.export import DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT
from .traces.sampling import activate

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
    # A day's model spend budget in USD (AgentDailyBudgetBurn); None: no budget, not exported.
    daily_cost_usd: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.name == sc.OBJECTIVE_DAILY_COST_USD:
                continue
            if f.name.endswith("_usd") and (isinstance(v, bool) or not isinstance(v, int | float) or not v > 0):
                raise ValueError(f"objective {f.name} must be a number of US dollars > 0, got {v!r}")
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"objective {f.name} must be a finite number, got {v!r}")
            if f.name.endswith(("_ratio", "_score")) and not 0 <= v <= 1:
                raise ValueError(f"objective {f.name} is a ratio in [0, 1], got {v!r}")
            if f.name.endswith("_seconds") and v <= 0:
                raise ValueError(f"objective {f.name} must be > 0 seconds, got {v!r}")

    def as_dict(self) -> dict[str, float]:
        """The objectives that are set (`daily_cost_usd` only when given)."""
        return {f.name: float(v) for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}

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

# The live configuration is a runtime (exporter/_runtime.py); the name State stays for annotations.
State = Runtime


def current() -> Runtime | None:
    """The live runtime, or None when unconfigured or shut down (the no-op path)."""
    return _runtime.current()


# configure()'s keywords, each with its own check (exporter/_checks.py), run on every call


def _objectives(name: str, value: object) -> None:
    if not isinstance(value, Mapping):
        c.fail(name, "a mapping of agent name (or '*') to Objectives or a mapping", value)
    for agent, objectives in value.items():
        c.text(f"{name} agent name", agent)
        Objectives.parse(agent, objectives)


def _prices(name: str, value: object) -> None:
    if isinstance(value, bool):  # True: the default (genai-prices alone); False: no cost
        return
    if not isinstance(value, Mapping):
        c.fail(name, "False, or a mapping of model name to {'input':, 'output':, 'cache_read':, 'cache_write':} "
               "USD per million tokens", value)  # fmt: skip
    parse_overrides(value)


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
    "span_trace_timeout": c.seconds(zero_ok=False),
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
    "prices": c.optional(_prices),
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
    span_trace_timeout: float = DEFAULT_TRACE_TIMEOUT,
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
    prices: Mapping[str, Mapping[str, float]] | bool | None = None,
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
    of the healthy ones (exporter/traces/sampling.py); metrics and logs stay exact.

    `task_store` (`sqlite:///path/tasks.db` or `postgresql://user@host:port/db`) records every
    execution in a database, written off the agent's thread (exporter/tasks/); rows older than
    `task_store_retention_days` are purged; the waiting gauges are read from it every
    `task_store_refresh` seconds.

    Model usage is priced from `genai-prices`' offline snapshot (exporter/pricing.py);
    `prices={"my-model": {"input": 1.0, "output": 3.0, "cache_read": 0.1, "cache_write": 1.25}}` (USD
    per million tokens) adds or overrides models, `prices=False` turns cost off.

    `span_metrics=True` turns other instrumentations' spans (agent frameworks) into the same
    metrics; a framework trace with no span for `span_trace_timeout` seconds is dropped, counted.

    Everything started here is stopped once, within `shutdown_timeout`, by `shutdown()`, `reset()`
    or interpreter exit; a forked child starts clean (exporter/_runtime.py).
    """
    args = locals()
    check_arguments(args)  # on every call, so a bad argument never passes silently
    with _runtime.lock:
        running = _runtime.current()
        if running is not None:
            warnings.warn(
                "agent_exporter.configure() called again; the first configuration stays "
                "(call exporter.reset() first to reconfigure)",
                RuntimeWarning,
                stacklevel=2,
            )
            return running
        config = Config(**args)
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
        rt = Runtime(config, settings).start()  # all or nothing: ValueError, nothing left running
        _runtime.install(rt)
        return rt


def metrics_app() -> Callable[..., Any]:
    """A WSGI app serving /metrics (text or OpenMetrics, by the scraper's Accept header).

    prometheus_client's `make_wsgi_app`, with OpenMetrics rendered by `exposition.generate_openmetrics`
    (same bytes, faster)."""
    rt = _runtime.last()
    registry = serving_registry(rt.metrics.registry) if rt else CollectorRegistry()
    return make_metrics_app(registry)


def registry() -> CollectorRegistry | None:
    """The registry the library's metrics live in (None when unconfigured); still readable after
    `shutdown()`, for a last scrape."""
    rt = _runtime.last()
    return rt.metrics.registry if rt else None


def flush(timeout: float | None = None) -> bool:
    """Export the spans made so far, waiting at most `timeout` seconds; True if they all arrived.

    For the end of a short-lived process, a serverless invocation or a task (metrics need no
    flush: Prometheus scrapes them, and multiprocess files are written as they change). The
    default timeout is `configure(export_timeout=)`. Unconfigured: True. Never raises.
    """
    state = _runtime.current()
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
    """Stop everything the library started, within `timeout` seconds (default `shutdown_timeout`):
    queued spans exported and task rows written in that budget, the rest counted; never raises.

    Interpreter exit does the same by itself; afterwards the library is a no-op (`registry()`
    stays readable), and `configure()` may start it again."""
    rt = _runtime.current()
    if rt is not None:
        rt.stop(timeout)


def reset() -> None:
    """Forget the configuration (for tests): stop what the library started, and only that."""
    with _runtime.lock:
        rt = _runtime.last()
        if rt is not None:
            rt.stop()
        activate(None)
        _runtime.install(None)
