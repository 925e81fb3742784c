"""The runtime: the one owner of everything the library starts in a process.

`configure()` checks its arguments into a frozen `Config` and hands it to `Runtime.start()`, which
builds the metric families, the span export (its worker thread), the sampling policy, the task
store's writer, the span bridge, the housekeeping thread and the `/metrics` server — all of them
or none: a part that fails stops every part already started and raises `ValueError`.

Three process events, each handled once, here (docs/architecture.md, "The runtime"):
- `shutdown()` / `reset()` / interpreter exit stop it, once, within `shutdown_timeout`: spans
  exported and task rows written in that budget, the rest counted. One `atexit` hook for all.
- `os.fork()`: the child gets fresh locks and queues, an empty watchdog, threads on first use; the
  parent's executions, held spans, queued rows and server are the parent's.
- The library's own I/O runs under OpenTelemetry's suppress-instrumentation context
  (`_suppress`), so an auto-instrumented host never traces (and re-exports) it.
"""

from __future__ import annotations

import atexit
import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from . import semconv as sc
from ._version import __version__
from .instrument.watchdog import WATCHDOG
from .pipeline.exposition import start_metrics_server
from .pipeline.logs import RateLimitedWarnings, get_logger, own_exporter_logs
from .pipeline.metrics import Metrics, multiprocess_enabled
from .pipeline.recorder import Recorder
from .pricing import Prices, parse_overrides
from .semconv import DropReason
from .spans.bridge import install as install_bridge
from .spans.mapping import DEFAULT_TRACE_TIMEOUT
from .tasks.backend import StoreError
from .tasks.sink import TaskSink
from .traces.export import DEFAULT_EXPORT_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, TracingSetup, setup_tracing
from .traces.sampling import Sampling, activate, holders

if TYPE_CHECKING:
    from ._config import Settings

HOUSEKEEPING_INTERVAL = 0.25  # seconds between the housekeeping thread's rounds (span bridge)


@dataclass(frozen=True)
class Config:
    """`configure()`'s arguments, checked (exporter/_config.py): what the runtime is built from."""

    service_name: str = "agent"
    agent_version: str | None = None
    metrics_port: int | None = 9464
    metrics_addr: str = "0.0.0.0"
    otlp_endpoint: str | None = None
    registry: CollectorRegistry | None = None
    tracer_provider: Any = None
    span_exporter: Any = None
    tracing: bool = True
    set_global_tracer_provider: bool = False
    span_metrics: bool = False
    span_trace_timeout: float = DEFAULT_TRACE_TIMEOUT
    sample_healthy: float = 1.0
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_label_values: int = 100
    max_agents: int = 50
    metrics_certfile: str | None = None
    metrics_keyfile: str | None = None
    metrics_client_cafile: str | None = None
    metrics_client_auth_required: bool = False
    task_store: str | None = None
    task_store_retention_days: float = 7.0
    task_store_refresh: float = 15.0
    prices: Any = None  # None: genai-prices alone; a mapping: overrides; False: no cost
    # What executions read, turned into `Settings` by configure().
    objectives: Any = None
    capture_content: bool = True
    redact: Any = None
    max_content_bytes: int = 4096
    max_duration: float | None = None
    review_threshold: float | None = None
    evaluation_fail_status: str = "failed"
    log_level: str = "info"


class Runtime:
    """What a configuration started, and the one place that stops it (and re-makes it after fork).

    Its public attributes are what executions, steps and the API read: `settings`, `metrics`,
    `recorder`, `tracing`, `sampling`, `tasks`, `bridge`, `warnings`.
    """

    def __init__(self, config: Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.warnings = RateLimitedWarnings(min_level=settings.log_level)  # 'off' silences warnings too
        self.metrics = Metrics(
            config.registry,
            warnings=self.warnings,
            max_label_values=config.max_label_values,
            max_agents=config.max_agents,
        )
        self.log = get_logger()
        # The fan-out of every event (native API, span bridge): metrics, log events, task store.
        self.recorder = Recorder(self.metrics, self.log, settings.log_level)
        self.tracing = TracingSetup(trace.NoOpTracer(), None)
        self.sampling: Sampling | None = None  # which executions' traces are kept
        self.tasks: TaskSink | None = None  # the task store's writer, with task_store=
        self.bridge: Any = None  # the span bridge, with span_metrics=True
        # Model prices (genai-prices + overrides), None with prices=False: usage is not priced.
        self.prices: Prices | None = None if config.prices is False else Prices(
            parse_overrides(config.prices if isinstance(config.prices, dict | Mapping) else {})
        )
        self.server: Any = None
        self.server_thread: threading.Thread | None = None
        self.generation = 0  # +1 in each forked child: executions of an older one are the parent's
        self.stopped = False
        self._lock = threading.Lock()
        self._periodic: list[Callable[[], object]] = []
        self._wake = threading.Event()
        self._housekeeper: threading.Thread | None = None

    def drop(self, reason: DropReason, message: str, amount: float = 1.0) -> None:
        self.metrics.drop(reason, message, amount)

    # ------------------------------------------------------------------ start: all or nothing

    def start(self) -> Runtime:
        """Start every part, or none: a failure stops what started and raises ValueError."""
        try:
            self._start()
        except Exception as exc:
            self.stop(0.0)
            if isinstance(exc, ValueError):
                raise
            if isinstance(exc, StoreError):
                raise ValueError(str(exc)) from exc
            raise ValueError(f"configure() failed ({type(exc).__name__}: {exc}); nothing was left running") from exc
        return self

    def _start(self) -> None:
        cfg, metrics, warn = self.config, self.metrics, self.warnings
        settings = self.settings
        metrics.objective_source = lambda agent: settings.objectives_for(agent).as_dict()
        for agent in settings.objectives:
            if agent != "*":
                metrics.agent_label(metrics.name(agent, "agent name"))

        def on_drop(reason: DropReason, message: str, amount: int) -> None:
            metrics.drop(reason, message, amount)

        self.tracing = setup_tracing(
            service_name=cfg.service_name,
            enabled=cfg.tracing,
            tracer_provider=cfg.tracer_provider,
            otlp_endpoint=cfg.otlp_endpoint,
            span_exporter=cfg.span_exporter,
            export_timeout=cfg.export_timeout,
            shutdown_timeout=cfg.shutdown_timeout,
            set_global=cfg.set_global_tracer_provider,
            on_drop=on_drop,
            on_warn=lambda m: warn.warn("tracing", m),
            version=__version__,
            sample_healthy=cfg.sample_healthy,
        )
        if cfg.span_exporter is None and self.tracing.processor is not None:
            own_exporter_logs(self.tracing.processor.exporter, warn)  # the library built it: its SDK logs are ours
        if cfg.tracing:  # every execution's trace decision is counted; spans are held only below 1
            decisions = metrics.child

            def count(decision: str, reason: str) -> None:
                decisions(sc.SAMPLING_DECISIONS, decision, reason).inc()

            self.sampling = Sampling(float(cfg.sample_healthy), on_drop, count)
            activate(self.sampling)
            if cfg.sample_healthy < 1 and self.tracing.processor is None and not holders():
                warn.warn(
                    "sampling",
                    "sample_healthy < 1 holds spans only in the library's own export (otlp_endpoint= or "
                    "span_exporter=) or in an exporter.SamplingSpanProcessor around your export processor; "
                    "with neither, every trace is kept",
                )
        if cfg.task_store is not None:  # the task list: a third consumer of every event
            self.tasks = TaskSink(
                cfg.task_store,
                metrics,
                retention_days=cfg.task_store_retention_days,
                refresh_interval=cfg.task_store_refresh,
            )
            self.recorder.tasks = self.tasks
        if cfg.span_metrics:  # other instrumentations' spans become the same metrics and log events
            version = settings.agent_version
            self.bridge = install_bridge(
                self.tracing,
                self.recorder,
                metrics.drop,
                exemplars=metrics.exemplars,
                version=None if version is None else metrics.name(version, "agent version"),
                prices=self.prices,
                trace_timeout=cfg.span_trace_timeout,
                warn=warn.warn,
                tasks=self.tasks,
            )
            # Attach to the app's provider when it appears, warn when none ever does, expire traces.
            self._periodic.append(self.bridge.tick)
        if cfg.metrics_port is not None:
            self._serve(cfg)
        self._start_housekeeper()

    def _serve(self, cfg: Config) -> None:
        try:
            self.server, self.server_thread = start_metrics_server(
                cfg.metrics_port or 0,
                addr=cfg.metrics_addr,
                registry=serving_registry(self.metrics.registry),
                certfile=cfg.metrics_certfile,
                keyfile=cfg.metrics_keyfile,
                client_cafile=cfg.metrics_client_cafile,
                client_auth_required=cfg.metrics_client_auth_required,
            )
        except OSError as exc:
            hint = _bind_hint(exc, tls=cfg.metrics_certfile is not None)
            raise ValueError(
                f"cannot serve /metrics on {cfg.metrics_addr}:{cfg.metrics_port}: {exc} ({hint})"
            ) from exc

    def _start_housekeeper(self) -> None:
        if not self._periodic or self.stopped:
            return
        self._wake = threading.Event()
        t = threading.Thread(target=self._housekeeping, name="agent-exporter-housekeeping", daemon=True)
        t.start()
        self._housekeeper = t

    def _housekeeping(self) -> None:
        wake = self._wake
        while not wake.wait(HOUSEKEEPING_INTERVAL):
            for job in self._periodic:
                try:
                    job()
                except Exception as exc:  # noqa: BLE001 - housekeeping must survive its own bugs
                    self.drop(DropReason.INTERNAL_ERROR, f"internal error in housekeeping: {exc!r}")

    # ------------------------------------------------------------------ stop: once, bounded

    def stop(self, timeout: float | None = None) -> None:
        """Stop everything, once, within `timeout` seconds (default `shutdown_timeout`): queued
        spans exported and task rows written in that budget, what does not fit counted."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        budget = self.config.shutdown_timeout if timeout is None else max(0.0, float(timeout))
        deadline = time.monotonic() + budget

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self._wake.set()
        for step in (
            self._stop_bridge,
            lambda: self.tracing.shutdown(left()),
            lambda: self._stop_tasks(left()),
            self._stop_server,
            self._stop_policy,
        ):
            try:
                step()
            except Exception:  # noqa: BLE001 - stopping must not raise into the host (or at exit)
                pass

    def _stop_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.shutdown()  # it stays in the provider it was added to, quiet from now on

    def _stop_tasks(self, timeout: float) -> None:
        self.recorder.tasks = None  # nothing more reaches the store: no queue without a writer
        if self.tasks is not None:
            self.tasks.close(timeout)

    def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _stop_policy(self) -> None:
        if self.sampling is not None:
            activate(None)
        if _current is self or _current is None:
            WATCHDOG.stop()

    # ------------------------------------------------------------------ fork

    def after_fork(self) -> None:
        """In a forked child: fresh locks and queues, threads on first use; nothing of the
        parent's (executions in flight, held spans, queued rows, the server) is the child's."""
        self.generation += 1
        self._lock = threading.Lock()
        self.warnings.after_fork()
        self.metrics.after_fork()
        for holder in holders():
            holder.after_fork()
        if self.tracing.processor is not None:
            self.tracing.processor.after_fork()
        if self.tasks is not None:
            self.tasks.after_fork()
        if self.bridge is not None:
            self.bridge.after_fork()
        server, self.server, self.server_thread = self.server, None, None
        if server is not None:  # the parent serves /metrics; the child closes its copy of the socket
            try:
                server.socket.close()
            except Exception:  # noqa: BLE001
                pass
        self._housekeeper = None
        if not self.stopped:
            self._start_housekeeper()


# --------------------------------------------------------------------------- the process's one runtime

_current: Runtime | None = None
lock = threading.Lock()  # configure() / reset() / shutdown(): one at a time


def current() -> Runtime | None:
    """The running runtime, or None (unconfigured, or shut down: the no-op path)."""
    rt = _current
    return rt if rt is not None and not rt.stopped else None


def last() -> Runtime | None:
    """The runtime configured last, running or stopped (its registry stays readable)."""
    return _current


def install(rt: Runtime | None) -> None:
    global _current
    _current = rt


def _at_exit() -> None:
    """Interpreter exit: what the library started is stopped within `shutdown_timeout`."""
    rt = _current
    if rt is not None:
        rt.stop()


def _after_fork_in_child() -> None:
    global lock
    lock = threading.Lock()
    WATCHDOG.after_fork()
    rt = _current
    if rt is not None and not rt.stopped:
        try:
            rt.after_fork()
        except Exception:  # noqa: BLE001 - a fork must never fail because of telemetry
            pass


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- /metrics helpers


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


def serving_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """In multiprocess mode /metrics aggregates every worker's files, not one registry."""
    if not multiprocess_enabled():
        return registry
    from prometheus_client import multiprocess

    agg = CollectorRegistry()
    multiprocess.MultiProcessCollector(agg)  # type: ignore[no-untyped-call]
    return agg
