"""The Prometheus side: the registry, the metric families, cached children, the cardinality guard.

Every family is built from its `semconv.MetricSpec`, so names, types, labels and buckets live in
one place. Label children are cached per label tuple: the hot path is a dict look-up and the
prometheus_client call itself. Histograms carry a `trace_id` exemplar (OpenMetrics only; not in
multiprocess mode, where prometheus_client drops exemplars).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .. import semconv as sc
from ..content import mask_secrets_in_text, valid_utf8
from ..semconv import DropReason, MetricSpec
from .logs import RateLimitedWarnings

DEFAULT_MAX_LABEL_VALUES = 100  # distinct step / tool / trigger / path / evaluation / version values per agent
DEFAULT_MAX_AGENTS = 50  # distinct agents per process
MAX_LABEL_LENGTH = 100  # characters of a label value; longer names are cut
_MAX_CLEAN_CACHE = 4096  # names remembered as needing no cleaning (a stream of new ones is not)

_GAUGE_MULTIPROCESS_MODES: dict[str, str] = {
    sc.EXECUTIONS_IN_PROGRESS.name: "livesum",
    sc.EXECUTIONS_PENDING.name: "livesum",
    sc.EXECUTION_PENDING_OLDEST.name: "livemin",
    sc.OBJECTIVE.name: "max",
    # Read from the shared store: every worker sees the same values.
    sc.TASKS_WAITING.name: "livemax",
    sc.TASKS_WAITING_OLDEST.name: "livemax",
    sc.AGENT_INFO.name: "max",  # 1 in any worker that ran the version
}


# What an execution in flight holds in this process's gauges: zero in a forked child.
_PER_PROCESS_GAUGES = frozenset(
    {sc.EXECUTIONS_IN_PROGRESS.name, sc.EXECUTIONS_PENDING.name, sc.EXECUTION_PENDING_OLDEST.name}
)


def multiprocess_enabled() -> bool:
    """prometheus_client's multiprocess mode is on (its env var names a directory)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _make_family(spec: MetricSpec, registry: CollectorRegistry | None) -> Any:
    if spec.type == "counter":
        return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)
    if spec.type == "histogram":
        return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets or ())
    if spec.type == "gauge":
        mode = _GAUGE_MULTIPROCESS_MODES.get(spec.name, "livesum")
        return Gauge(spec.name, spec.help, spec.labels, registry=registry, multiprocess_mode=mode)  # type: ignore[arg-type]
    raise ValueError(f"unknown metric type {spec.type!r} for {spec.name}")


class Metrics:
    """The library's metric families in one registry, with a guard on label cardinality."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        warnings: RateLimitedWarnings | None = None,
        max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
        max_agents: int = DEFAULT_MAX_AGENTS,
        exemplars: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.warnings = warnings or RateLimitedWarnings()
        self.max_label_values = max_label_values
        self.max_agents = max_agents
        self.multiprocess = multiprocess_enabled()
        self.exemplars = exemplars and not self.multiprocess
        self._families: dict[str, Any] = {s.name: _make_family(s, self.registry) for s in sc.METRICS}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._clean: dict[Hashable, str] = {}  # raw name -> itself, when it needed no cleaning
        self._admitted: set[tuple[str, str, str]] = set()  # (agent label, kind, name) under the cap
        self._seen: dict[tuple[str, str], set[str]] = {}  # (agent, kind) -> admitted values
        self._agents: dict[str, str] = {}  # admitted agent name -> label
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], dict[int, float]] = {}
        self._objectives_set: set[str] = set()
        # Set by configure(): agent -> its configured objectives (partial; defaults fill the rest).
        self.objective_source: Callable[[str], Mapping[str, float]] | None = None

    # ------------------------------------------------------------------ plumbing

    def child(self, spec: MetricSpec, *labels: str) -> Any:
        """The cached labelled child of a family."""
        key = (spec.name, labels)
        c = self._children.get(key)
        if c is None:
            c = self._families[spec.name].labels(*labels)
            self._children[key] = c
        return c

    def drop(self, reason: DropReason, message: str, amount: float = 1.0) -> None:
        """Count something corrected or dropped, and warn (rate-limited) saying what."""
        try:
            self.child(sc.EXPORTER_DROPPED, reason.value).inc(amount)
        except Exception:  # noqa: BLE001 - counting a drop must never raise
            pass
        self.warnings.warn(reason.value, message)

    # ------------------------------------------------------------------ cardinality guard

    def clean_name(self, value: Any, what: str) -> str:
        """A usable label value: a non-empty string of bounded length, counted when corrected."""
        if not isinstance(value, str):
            try:
                text = str(value)
            except Exception:  # noqa: BLE001 - __str__ of user objects may raise
                text = sc.UNKNOWN_LABEL_VALUE
            self.drop(DropReason.INVALID_NAME, f"{what} {text[:60]!r} is not a string; used str()")
            value = text
        value = value.strip()
        cleaned = mask_secrets_in_text(valid_utf8(value))[0]
        if cleaned != value:  # a lone surrogate would break the whole exposition
            self.drop(DropReason.INVALID_NAME, f"{what} had invalid UTF-8 or a secret-looking part; replaced")
            value = cleaned
        if not value:
            self.drop(DropReason.INVALID_NAME, f"empty {what}; recorded as {sc.UNKNOWN_LABEL_VALUE!r}")
            return sc.UNKNOWN_LABEL_VALUE
        if len(value) > MAX_LABEL_LENGTH:
            self.drop(DropReason.INVALID_NAME, f"{what} longer than {MAX_LABEL_LENGTH} characters; cut")
            value = value[:MAX_LABEL_LENGTH]
        return str(value)

    def name(self, value: Any, kind: str) -> str:
        """`clean_name`, remembered for names that needed no correction (the hot path's case).

        Names go on spans and logs as they are; only `agent_label` / `label` cap them."""
        try:
            return self._clean[value]
        except (KeyError, TypeError):
            pass
        name = self.clean_name(value, kind)
        if name == value and len(self._clean) < _MAX_CLEAN_CACHE:
            self._clean[value] = name
        return name

    def agent_label(self, name: str) -> str:
        """The metric label for an agent's (cleaned) name, capped at `max_agents` per process.

        The cap protects Prometheus only: an agent over it is `__other__` in metrics and keeps
        its own name everywhere else."""
        try:
            return self._agents[name]
        except (KeyError, TypeError):
            pass
        with self._lock:
            if name not in self._agents and len(self._agents) >= self.max_agents:
                label = sc.OTHER_LABEL_VALUE
            else:
                label = self._agents[name] = name  # admitted agents only: memory stays bounded
        if label == sc.OTHER_LABEL_VALUE:
            self.drop(DropReason.LABEL_OVERFLOW, f"more than {self.max_agents} agents; {name!r} -> __other__")
        else:
            self.ensure_objectives(label, None)
        return label

    def label(self, agent: str, kind: str, name: str) -> str:
        """The metric label for a (cleaned) step / tool / trigger / path name, capped per agent and kind."""
        key = (agent, kind, name)
        if key in self._admitted:
            return name
        with self._lock:
            seen = self._seen.setdefault((agent, kind), set())
            if name in seen or len(seen) < self.max_label_values:
                seen.add(name)
                self._admitted.add(key)  # an endless stream of new names must not grow this
                return name
        self.drop(
            DropReason.LABEL_OVERFLOW,
            f"agent {agent!r} has more than {self.max_label_values} distinct {kind} values; "
            f"{name[:60]!r} and later ones are recorded as {sc.OTHER_LABEL_VALUE} in metrics",
        )
        return sc.OTHER_LABEL_VALUE

    # ------------------------------------------------------------------ objectives

    def ensure_objectives(self, agent: str, objectives: Mapping[str, float] | None) -> None:
        """Export `agent_objective` for an agent once (defaults unless configured)."""
        if agent in self._objectives_set and objectives is None:
            return
        values = dict(sc.DEFAULT_OBJECTIVES)
        if objectives is not None:
            values.update(objectives)
        elif self.objective_source is not None:
            values.update(self.objective_source(agent))
        for name, value in values.items():
            self.child(sc.OBJECTIVE, agent, name).set(value)
        self._objectives_set.add(agent)

    # ------------------------------------------------------------------ fork

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, and nothing in progress or waiting here (the parent's
        executions are not the child's; their gauges would otherwise never come back down)."""
        self._lock = threading.Lock()
        self._pending.clear()
        for (name, _labels), c in list(self._children.items()):
            if name in _PER_PROCESS_GAUGES:
                c.set(math.inf if name == sc.EXECUTION_PENDING_OLDEST.name and self.multiprocess else 0)

    # ------------------------------------------------------------------ pending

    def pending_add(self, agent: str, reason: str, token: int, since: float) -> None:
        """An execution of `agent` began waiting for `reason` at unix time `since`."""
        with self._lock:
            waiting = self._pending.setdefault((agent, reason), {})
            waiting[token] = since
            oldest = _oldest(waiting)
        self.child(sc.EXECUTIONS_PENDING, agent, reason).inc()
        self.child(sc.EXECUTION_PENDING_OLDEST, agent, reason).set(oldest)

    def pending_remove(self, agent: str, reason: str, token: int) -> None:
        """The execution stopped waiting (it runs, was cancelled, or left the process)."""
        with self._lock:
            waiting = self._pending.get((agent, reason), {})
            if waiting.pop(token, None) is None:
                return
            oldest = _oldest(waiting) if waiting else None
        self.child(sc.EXECUTIONS_PENDING, agent, reason).dec()
        none = math.inf if self.multiprocess else 0.0  # livemin across workers must skip "none"
        self.child(sc.EXECUTION_PENDING_OLDEST, agent, reason).set(oldest if oldest is not None else none)


def _oldest(waiting: dict[int, float]) -> float:
    """Insertion order is waiting order; min() only while small, for clocks that step back."""
    return min(waiting.values()) if len(waiting) <= 256 else next(iter(waiting.values()))


def exemplar_of(trace_id: str | None) -> dict[str, str] | None:
    """The exemplar labels for an observation, or None without a trace."""
    return {sc.EXEMPLAR_TRACE_ID: trace_id} if trace_id else None
