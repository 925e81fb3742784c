"""`agent-exporter demo`: a seeded, realistic simulated agent workload (public API only).

Three agents (`invoice`, `support-email`, `daily-report`) run concurrently at `--rate` executions
per second, with tool calls to named integrations, evaluation scores, token usage, branch
decisions, human approvals (in-process waits, and suspend/resume through a carrier), and failures
of every cause at realistic rates. `--scenario` switches degrade one part on purpose so that a
given alert fires. Simulated time runs `--speed` times faster than the clock. `--task-store URL`
records every execution in a task store (the Tasks dashboard's database); suspended approvals the
demo had not resumed when it stopped stay there, waiting.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import itertools
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

import structlog

import exporter

from ..tasks.backend import redact_url
from .agents import AGENTS, MIX, SCENARIOS, Sim, objectives, resume_invoice

DEFAULT_PORT = 9464
log = structlog.get_logger("agent_exporter.demo")


def _scenarios(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]
    if "all" in names:
        return sorted(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return names


def _positive(value: str) -> float:
    v = float(value)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return v


def _ratio(value: str) -> float:
    v = float(value)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return v


def _run_id() -> str:
    """A short id of this run (base 36 of the start time, in seconds), part of every task id."""
    n, digits = int(time.time()), "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    scen = "; ".join(f"{k}: {d} ({a})" for k, (d, a, _) in SCENARIOS.items()).replace("%", "%%")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for /metrics (default {DEFAULT_PORT})")
    p.add_argument(
        "--addr", default="127.0.0.1", help="bind address for /metrics (default 127.0.0.1; 0.0.0.0 in Docker)"
    )
    p.add_argument("--otlp-endpoint", default=None,
                   help="OTLP/HTTP endpoint for traces, e.g. http://localhost:4318 "
                        "(default: $OTEL_EXPORTER_OTLP_ENDPOINT; traces are not exported without one)")  # fmt: skip
    p.add_argument("--console-traces", action="store_true", help="print spans to stdout instead (noisy)")
    p.add_argument("--duration", type=float, default=0, help="seconds to run (default 0: until Ctrl-C / SIGTERM)")
    p.add_argument("--rate", type=_positive, default=2.0, help="new executions per second (default 2)")
    p.add_argument("--speed", type=_positive, default=5.0,
                   help="simulated time runs this many times faster than the clock (default 5); recorded "
                        "durations and the demo's time objectives are divided by it")  # fmt: skip
    p.add_argument("--scenario", type=_scenarios, action="extend", default=[], metavar="NAME[,NAME]",
                   help=f"degrade something on purpose (repeatable; 'all' or 'none'). {scen}")  # fmt: skip
    p.add_argument(
        "--scenario-delay",
        type=float,
        default=0.0,
        help="seconds of healthy traffic before the scenarios start (default 0)",
    )
    p.add_argument("--task-store", default=None, metavar="URL",
                   help="record every execution in a task store: sqlite:///path/tasks.db or "
                        "postgresql://user@host:port/db (default: none)")  # fmt: skip
    p.add_argument("--task-store-refresh", type=_positive, default=15.0,
                   help="seconds between reads of the store's waiting gauges (default 15)")  # fmt: skip
    p.add_argument("--sample-healthy", type=_ratio, default=1.0,
                   help="keep this fraction of healthy executions' traces (default 1: all); failed, slow "
                        "and flagged ones are always kept")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same workload")
    p.add_argument("--max-concurrency", type=int, default=1000, help="executions in flight at most (default 1000)")
    p.add_argument("--progress-interval", type=float, default=5.0, help="seconds between progress lines (default 5)")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: a log line per execution; -vv: per step and branch decision too",
    )
    p.add_argument("--log-format", choices=("console", "json"), default="console", help="log rendering")


def _per_execution_lines_off(_logger: Any, _method: str, event_dict: Any) -> Any:
    """At default verbosity: the library's warnings, but no line per execution (`execution_failed`)."""
    if event_dict.get("task_id") is not None:
        raise structlog.DropEvent
    return event_dict


def _configure_logging(fmt: str, verbose: int = 0) -> None:
    # The application configures logging, not the library: with structlog configured, the
    # library's events and warnings are rendered by it; other libraries' stdlib logs go here.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stdout, format="%(asctime)s [%(levelname)-8s] %(name)s: %(message)s"
    )
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *([] if verbose else [_per_execution_lines_off]),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exporter.add_trace_context,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


class ApprovalDesk:
    """Approvers working elsewhere: suspended executions come back after their approval time."""

    def __init__(self, sim: Sim, spawn: Any) -> None:
        self.sim = sim
        self.spawn = spawn
        self._heap: list[tuple[float, int, str, float]] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="demo-approvals", daemon=True)

    def submit(self, sim_seconds: float, carrier_json: str, roll: float) -> None:
        due = time.monotonic() + self.sim.real(sim_seconds)
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._ids), carrier_json, roll))
        self._wake.set()

    def waiting(self) -> int:
        with self._lock:
            return len(self._heap)

    def _loop(self) -> None:
        while not self.sim.stop.is_set():
            due = []
            with self._lock:
                while self._heap and self._heap[0][0] <= time.monotonic():
                    due.append(heapq.heappop(self._heap))
                nxt = self._heap[0][0] - time.monotonic() if self._heap else 0.5
            for _, _, carrier_json, roll in due:
                self.spawn("invoice", lambda c=carrier_json, r=roll: resume_invoice(self.sim, c, r))
            self._wake.wait(min(max(nxt, 0.01), 0.5))
            self._wake.clear()


class Workload:
    """Arrivals (Poisson at `rate`), one thread per execution, counts for the progress line."""

    def __init__(self, args: Any, sim: Sim) -> None:
        self.args = args
        self.sim = sim
        self.counts: Counter[str] = Counter()
        self.by_agent: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._slots = threading.BoundedSemaphore(max(1, args.max_concurrency))
        self.verbose = args.verbose

    def spawn(self, agent: str, fn: Any) -> None:
        while not self._slots.acquire(timeout=0.2):
            if self.sim.stop.is_set():
                return
        t = threading.Thread(target=self._run, args=(agent, fn), name=f"demo-{agent}", daemon=True)
        with self._lock:
            self._threads.add(t)
            self.counts["started"] += 1
        t.start()

    def _run(self, agent: str, fn: Any) -> None:
        status = "error"
        try:
            run = fn()
            status = str(getattr(run, "status", "")) or "unknown"
        except Exception:  # noqa: BLE001 - the agent's own failure: recorded by the library already
            status = "failed"
        except BaseException:  # noqa: BLE001
            status = "failed"
        finally:
            with self._lock:
                self.counts["pending" if status == "pending" else status] += 1
                self.by_agent[(agent, status)] += 1
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._threads)

    def join(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                left = list(self._threads)
            if not left:
                return 0
            left[0].join(max(0.0, min(0.2, deadline - time.monotonic())))
        return self.in_flight()


def _progress(work: Workload, desk: ApprovalDesk, t0: float, last: dict[str, Any]) -> None:
    c = work.counts
    now = time.monotonic()
    done = c["completed"] + c["failed"] + c["cancelled"]
    rate = (done - last.get("done", 0)) / max(1e-9, now - last.get("t", t0))
    last.update(done=done, t=now)
    log.info(
        "progress",
        elapsed_s=round(now - t0, 1),
        started=c["started"],
        completed=c["completed"],
        failed=c["failed"],
        cancelled=c["cancelled"],
        suspended=c["pending"],
        in_flight=work.in_flight(),
        awaiting_remote_approval=desk.waiting(),
        per_second=round(rate, 2),
    )


def _cannot_start(exc: ValueError, args: Any) -> str:
    """configure()'s message, with this command's options where it names the Python API's keywords."""
    cause = exc.__cause__
    if not isinstance(cause, OSError):
        return str(exc)
    where = f"cannot serve /metrics on {args.addr}:{args.port}: {cause.strerror or cause}"
    if isinstance(cause, socket.gaierror) or cause.errno == errno.EADDRNOTAVAIL:
        return f"{where}: pass another --addr (an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)"
    if cause.errno in (errno.EADDRINUSE, errno.EACCES):
        return f"{where}: the port is in use or not allowed; pass another --port (e.g. --port {args.port + 1})"
    return f"{where}: check --addr and --port"


def run(args: Any) -> int:
    _configure_logging(args.log_format, args.verbose)
    level = {0: "warning", 1: "info"}.get(args.verbose, "debug")
    span_exporter = None
    if args.console_traces:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
    try:
        exporter.configure(
            service_name="agent-exporter-demo",
            metrics_port=args.port,
            metrics_addr=args.addr,
            otlp_endpoint=args.otlp_endpoint,
            span_exporter=span_exporter,
            objectives=objectives(args.speed),
            log_level=level,
            sample_healthy=args.sample_healthy,
            task_store=args.task_store,
            task_store_refresh=args.task_store_refresh,
        )
    except ValueError as exc:
        log.error("cannot start", error=_cannot_start(exc, args))
        return 1

    stop = threading.Event()
    t0 = time.monotonic()
    sim = Sim(
        speed=args.speed,
        stop=stop,
        scenarios=frozenset(args.scenario),
        scenario_start=t0 + args.scenario_delay,
        clock=time.monotonic,
        run_id=_run_id(),
    )
    work = Workload(args, sim)
    desk = ApprovalDesk(sim, work.spawn)
    sim.approvals = desk

    signals = {"n": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals["n"] += 1
        if signals["n"] > 1:
            os._exit(128 + signum)  # a second Ctrl-C: leave now
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    host = "127.0.0.1" if args.addr in ("0.0.0.0", "::", "") else args.addr
    traces = (
        "console" if args.console_traces
        else (args.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
              or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "off (set --otlp-endpoint)")
    )  # fmt: skip
    log.info(
        f"agent-exporter demo: metrics on http://{host}:{args.port}/metrics (Ctrl-C to stop)",
        listen=f"{args.addr}:{args.port}",
        traces=traces,
        agents=",".join(AGENTS),
        rate=args.rate,
        speed=args.speed,
        scenarios=",".join(args.scenario) or "none",
        seed=args.seed,
        run_id=sim.run_id,
        task_store=redact_url(args.task_store) if args.task_store else "off",
    )

    master = random.Random(args.seed)
    names = list(MIX)
    weights = [MIX[n][0] for n in names]
    deadline = t0 + args.duration if args.duration and args.duration > 0 else None
    desk.thread.start()
    last: dict[str, Any] = {}
    next_progress = t0 + args.progress_interval
    next_arrival = t0
    n = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_progress:
                _progress(work, desk, t0, last)
                next_progress += args.progress_interval
            if now < next_arrival:
                stop.wait(min(next_arrival - now, 0.25))
                continue
            n += 1
            agent = master.choices(names, weights=weights)[0]
            rng = random.Random(args.seed * 1_000_003 + n)
            work.spawn(agent, lambda f=MIX[agent][1], r=rng, i=n: f(sim, r, i))
            next_arrival += master.expovariate(args.rate)
    finally:
        stop.set()
        left = work.join(timeout=5.0)
        _progress(work, desk, t0, last)
        log.info(
            "stopped",
            left_running=left,
            approvals_left_suspended=desk.waiting(),
            by_agent={f"{a}/{s}": v for (a, s), v in sorted(work.by_agent.items())},
        )
        exporter.shutdown()
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
