"""Names, parameters and recording rules of the Prometheus rule file.

The alerting rules that read them are in `alert_rules/alerts.py`; `alert_rules/render.py` writes
the committed `alert_rules/agent-rules.yml` from the default `Params()`. Why: docs/alerts.md.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load_semconv() -> ModuleType:
    """Import exporter/semconv.py by path: it needs only the standard library."""
    name = "_agent_exporter_semconv"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "exporter" / "semconv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


semconv = _load_semconv()

# --------------------------------------------------------------------------- names

FINISHED = semconv.EXECUTIONS_FINISHED.name
STARTED = semconv.EXECUTIONS_STARTED.name
DURATION = semconv.EXECUTION_DURATION.name
SCORE = semconv.EXECUTION_EVALUATION_SCORE.name
TOOL_CALLS = semconv.TOOL_CALLS.name
EVALUATIONS = semconv.EVALUATIONS.name
PENDING_OLDEST = semconv.EXECUTION_PENDING_OLDEST.name
# The task store's oldest wait: the same value from every process with the store (suspended
# executions included, whichever process suspended them); 0 when nothing waits.
TASKS_WAITING_OLDEST = semconv.TASKS_WAITING_OLDEST.name
OBJECTIVE = semconv.OBJECTIVE.name
COST = semconv.COST.name
LLM_CALLS = semconv.LLM_CALLS.name
DAILY_COST = semconv.OBJECTIVE_DAILY_COST_USD

COMPLETION_RATIO = semconv.OBJECTIVE_COMPLETION_RATIO
MAX_RUNTIME = semconv.OBJECTIVE_MAX_RUNTIME_SECONDS
MIN_SCORE = semconv.OBJECTIVE_MIN_EVALUATION_SCORE
MAX_TOOL_ERROR = semconv.OBJECTIVE_MAX_TOOL_ERROR_RATIO
MAX_PENDING = semconv.OBJECTIVE_MAX_PENDING_SECONDS

# When several instances of one agent export different objectives, the strictest wins.
STRICTEST = {COMPLETION_RATIO: "max", MIN_SCORE: "max", MAX_RUNTIME: "min", MAX_TOOL_ERROR: "min",
             MAX_PENDING: "min"}  # fmt: skip

# Series from which an agent is known to exist, so that it gets the default objectives even when
# it exports no `agent_objective` (an older library, another emitter): every input of an alert.
AGENT_PRESENCE = (STARTED, FINISHED, DURATION + "_count", SCORE + "_count", TOOL_CALLS, PENDING_OLDEST, OBJECTIVE)

# The alerts for agents below the ratio alerts' volume guard (issue 18), listed in `semconv.ALERTS`.
LOW_VOLUME_ALERTS = ("AgentExecutionsAllFailing", "AgentLowVolumeFailures")
ALERTS: tuple[str, ...] = semconv.ALERTS

# Grafana dashboard uids (built in dashboards/), one per alert.
DASHBOARDS = {
    "AgentCompletionRateLow": "agent-overview",
    "AgentCompletionErrorBudgetBurn": "agent-completion-trends",
    "AgentTriggerCompletionRateLow": "agent-overview",
    "AgentRuntimeHigh": "agent-runtime",
    "AgentEvaluationScoreLow": "agent-evaluations",
    "AgentToolErrorRateHigh": "agent-tools",
    "AgentTasksStuckPending": "agent-tasks",
    "AgentRuntimeDeviation": "agent-runtime",
    "AgentEvaluationScoreDrop": "agent-evaluations",
    "AgentExecutionsStalled": "agent-overview",
    "AgentExporterDown": "agent-overview",
    "AgentExecutionsAllFailing": "agent-overview",
    "AgentLowVolumeFailures": "agent-overview",
    "AgentCostSpike": "agent-cost",
    "AgentDailyBudgetBurn": "agent-cost",
    "AgentLLMErrorsHigh": "agent-cost",
}

DEFAULT_FOR: dict[str, str] = {
    "AgentCompletionRateLow": "5m",
    "AgentTriggerCompletionRateLow": "10m",
    "AgentRuntimeHigh": "10m",
    "AgentEvaluationScoreLow": "10m",
    "AgentToolErrorRateHigh": "10m",
    "AgentTasksStuckPending": "5m",
    "AgentRuntimeDeviation": "30m",
    "AgentEvaluationScoreDrop": "30m",
    "AgentExecutionsStalled": "15m",
    "AgentExporterDown": "5m",
    "AgentExecutionsAllFailing": "5m",
    "AgentLowVolumeFailures": "10m",
    "AgentCostSpike": "15m",
    "AgentLLMErrorsHigh": "10m",
}  # AgentCompletionErrorBudgetBurn and AgentDailyBudgetBurn take their `for` from each BurnWindow

_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `1h30m`; ValueError if it is not one."""
    parts = _DURATION_RE.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def _times(duration: str, k: int) -> str:
    """`k` times a duration, in the largest whole unit of d, h, m, s: ("1d", 7) -> "7d"."""
    total = seconds(duration) * k
    for unit in ("d", "h", "m", "s"):
        if total % _UNIT_SECONDS[unit] == 0:
            return f"{int(total // _UNIT_SECONDS[unit])}{unit}"
    raise ValueError(f"{duration} x {k} is not a whole number of seconds")


def num(x: float) -> str:
    """A number as PromQL and humans like it: 14.4, 6, 0.1."""
    return f"{x:g}"


@dataclass(frozen=True)
class BurnWindow:
    """One row of the multi-window multi-burn-rate table."""

    long: str
    short: str
    factor: float
    severity: str
    for_: str


# The SRE workbook's table (chapter 5, "Alerting on SLOs"), for a 30-day error budget:
# 2 % of the budget in 1 h, 5 % in 6 h page; 10 % in 1 d, 10 % in 3 d warn.
DEFAULT_BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "critical", "2m"),
    BurnWindow("6h", "30m", 6, "critical", "15m"),
    BurnWindow("1d", "2h", 3, "warning", "1h"),
    BurnWindow("3d", "6h", 1, "warning", "3h"),
)

# AgentDailyBudgetBurn: the spend rate over both windows would use up the day's budget in
# 24 h / factor — half a day (critical), or before the day ends (warning).
DEFAULT_BUDGET_WINDOWS = (
    BurnWindow("1h", "5m", 2, "critical", "5m"),
    BurnWindow("6h", "30m", 1, "warning", "30m"),
)

# The smallest error budget a burn rate divides by: an objective of 1.0 (no budget) gives a very
# large, finite burn rate on the first failure and 0 without one, never +Inf or NaN.
BUDGET_FLOOR = 1e-06
# How long the target-to-agent map outlives a down target's last scrape between rule evaluations.
STICKY_LOOKBACK = "10m"

# The compose stack's addresses (docker-compose.yml publishes them on this machine); a deployment
# renders its own (`render.py --out DIR --grafana-url ...`) or sets GRAFANA_URL, RUNBOOK_URL and
# JAEGER_URL for the stack's Prometheus entrypoint (deploy/prometheus/entrypoint.sh).
DEFAULT_GRAFANA_URL = "http://localhost:3000"
DEFAULT_RUNBOOK_URL = "http://localhost:9090/user/runbook.html"  # served by the stack's Prometheus
DEFAULT_JAEGER_URL = "http://localhost:16686"


@dataclass(frozen=True)
class Params:
    """Everything the rules can be rendered with. Defaults are the committed production values."""

    window: str = "1h"  # threshold alerts: completion, trigger, runtime, score, tool errors
    extra_windows: tuple[str, ...] = ("5m",)  # more recording-rule windows for the dashboards
    burn_windows: tuple[BurnWindow, ...] = DEFAULT_BURN_WINDOWS
    # Baselines: the median of the same window one to `baseline_periods` periods earlier.
    baseline_period: str = "1d"
    baseline_periods: int = 7
    runtime_deviation_factor: float = 1.5  # p95 above this multiple of its baseline
    score_drop: float = 0.10  # mean score this far (absolute) below its baseline
    stall_window: str = "1h"  # no execution started for this long by an agent that, in the same
    stall_min_expected: float = 5  # window of earlier periods, started at least this many (median)
    min_executions: int = 10  # volume guard: finished executions (or scores) in the window
    min_tool_calls: int = 20  # volume guard: calls of one tool in the window
    # AgentExecutionsAllFailing: at least `all_failing_min` finished and none completed in one of
    # these windows (the shortest that holds two of the agent's runs scales to its rate).
    all_failing_windows: tuple[str, ...] = ("1h", "2h", "6h", "1d", "2d")
    all_failing_min: int = 2
    # AgentLowVolumeFailures: completion ratio below the objective over this window, for agents
    # that finished fewer than `min_executions` executions in it.
    low_volume_window: str = "2d"
    for_durations: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FOR))
    interval: str | None = None  # rule group evaluation interval; None: Prometheus' global one
    job: str = semconv.SCRAPE_JOB
    grafana_url: str = DEFAULT_GRAFANA_URL
    runbook_base: str = DEFAULT_RUNBOOK_URL  # each alert links to `<runbook_base>#<alertname lowercased>`
    jaeger_url: str = DEFAULT_JAEGER_URL
    # The Jaeger service searched when the agent's series carry no `service` label: the library's
    # default `service_name`. Label the scrape target `service: <its service_name>` otherwise.
    jaeger_service: str = "agent"
    jaeger_limit: int = 20
    # AgentCostSpike: spend over `window` above this multiple of the median of the same window on
    # earlier periods (baseline_period x baseline_periods), and at least this many dollars (the floor
    # that keeps a cheap agent doubling from $2 to $4 a day quiet).
    cost_spike_factor: float = 3.0
    cost_spike_min_usd: float = 5.0
    budget_windows: tuple[BurnWindow, ...] = DEFAULT_BUDGET_WINDOWS  # AgentDailyBudgetBurn
    # AgentLLMErrorsHigh: errors, timeouts and rate limits of one provider and model above this
    # share of its calls over `window`, with at least `min_llm_calls` calls.
    max_llm_error_ratio: float = 0.10
    min_llm_calls: int = 20

    def __post_init__(self) -> None:
        for d in (self.window, *self.extra_windows, self.baseline_period, self.stall_window,
                  self.low_volume_window, *self.all_failing_windows, *self.for_durations.values()):  # fmt: skip
            seconds(d)
        if not self.all_failing_windows or self.all_failing_min < 1:
            raise ValueError("all_failing_windows must be non-empty and all_failing_min at least 1")
        for b in (*self.burn_windows, *self.budget_windows):
            seconds(b.long), seconds(b.short), seconds(b.for_)
            if b.severity not in ("critical", "warning"):
                raise ValueError(f"burn window severity must be critical or warning: {b.severity!r}")
            if seconds(b.short) >= seconds(b.long):
                raise ValueError(f"burn window short {b.short} must be shorter than long {b.long}")
        unknown = set(self.for_durations) - set(ALERTS)
        if unknown:
            raise ValueError(f"for_durations names unknown alerts: {sorted(unknown)}")
        if self.baseline_periods < 1:
            raise ValueError(f"baseline_periods must be at least 1, got {self.baseline_periods}")
        if seconds(self.baseline_period) < max(seconds(self.window), seconds(self.stall_window)):
            raise ValueError(f"baseline_period {self.baseline_period} must not be shorter than the windows it repeats")
        for name in ("grafana_url", "runbook_base", "jaeger_url"):
            if not str(getattr(self, name)).startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL, got {getattr(self, name)!r}")
        if not self.jaeger_service.strip() or self.jaeger_limit < 1:
            raise ValueError("jaeger_service must be non-empty and jaeger_limit at least 1")

    @classmethod
    def short(cls, *, window: str = "1m", for_: str = "0s", min_executions: int = 5,
              **overrides: Any) -> Params:  # fmt: skip
        """Windows of 30 s to a few minutes and `for: 0s`, for a test that runs for ~30 s."""
        values: dict[str, Any] = dict(
            window=window,
            extra_windows=("30s",),
            burn_windows=(
                BurnWindow("1m", "30s", 14.4, "critical", for_),
                BurnWindow("2m", "1m", 6, "critical", for_),
                BurnWindow("4m", "2m", 3, "warning", for_),
                BurnWindow("8m", "4m", 1, "warning", for_),
            ),
            baseline_period="2m",
            baseline_periods=3,
            stall_window="1m",
            min_executions=min_executions,
            min_tool_calls=min_executions,
            all_failing_windows=("30s", "1m", "2m", "4m"),
            low_volume_window="4m",
            budget_windows=(BurnWindow("1m", "30s", 2, "critical", for_), BurnWindow("4m", "1m", 1, "warning", for_)),
            for_durations={name: for_ for name in DEFAULT_FOR},
        )
        values.update(overrides)
        return cls(**values)

    def for_(self, alert: str) -> str:
        return self.for_durations.get(alert, DEFAULT_FOR[alert])

    def ratio_windows(self) -> list[str]:
        """Windows of the shared per-agent/trigger/tool recording rules, shortest first."""
        return sorted({self.window, *self.extra_windows}, key=seconds)

    def completion_windows(self) -> list[str]:
        ws = {self.window, *self.extra_windows}
        for b in self.burn_windows:
            ws |= {b.long, b.short}
        return sorted(ws, key=seconds)

    def baseline_offsets(self) -> list[str]:
        """`baseline_period` times 1, 2, ... `baseline_periods`: ["1d", "2d", ..., "7d"]."""
        return [_times(self.baseline_period, k) for k in range(1, self.baseline_periods + 1)]

    def baseline_phrase(self) -> str:
        """How a description names the baseline: "the same 1h on up to 7 previous days"."""
        unit = {"1d": "days", "1w": "weeks"}.get(self.baseline_period, f"periods of {self.baseline_period}")
        return f"up to {self.baseline_periods} previous {unit}"


# --------------------------------------------------------------------------- recording rule names


def completion_ratio(w: str) -> str:
    return f"agent:agent_execution_completion:ratio_rate{w}"


def trigger_completion_ratio(w: str) -> str:
    return f"agent_trigger:agent_execution_completion:ratio_rate{w}"


def finished_increase(w: str) -> str:
    return f"agent:agent_executions_finished:increase{w}"


def trigger_finished_increase(w: str) -> str:
    return f"agent_trigger:agent_executions_finished:increase{w}"


def status_increase(w: str) -> str:
    return f"agent_status:agent_executions_finished:increase{w}"


def burn_rate(w: str) -> str:
    return f"agent:agent_execution_completion:burnrate{w}"


def runtime_p95(w: str, baseline: bool = False) -> str:
    return f"agent:agent_execution_duration_seconds:p95_rate{w}" + ("_baseline" if baseline else "")


def runtime_count(w: str) -> str:
    return f"agent:agent_execution_duration_seconds_count:increase{w}"


def score_mean(w: str, baseline: bool = False) -> str:
    return f"agent:agent_execution_evaluation_score:mean_rate{w}" + ("_baseline" if baseline else "")


def score_count(w: str) -> str:
    return f"agent:agent_execution_evaluation_score_count:increase{w}"


def started_increase(w: str, baseline: bool = False) -> str:
    return f"agent:agent_executions_started:increase{w}" + ("_baseline" if baseline else "")


def tool_error_ratio(w: str) -> str:
    return f"agent_tool:agent_tool_call_errors:ratio_rate{w}"


def criterion_pass_ratio(w: str) -> str:
    """pass / (pass + fail) per agent and evaluation criterion: the lowest names AgentEvaluationScoreLow's worst."""
    return f"agent_evaluation:agent_evaluations:pass_ratio_rate{w}"


def tool_calls_increase(w: str) -> str:
    return f"agent_tool:agent_tool_calls:increase{w}"


def cost_increase(w: str, baseline: bool = False) -> str:
    return f"agent:{COST}:increase{w}" + ("_baseline" if baseline else "")


def budget_burn(w: str) -> str:
    return f"agent:{COST}:budgetburn{w}"


def llm_error_ratio(w: str) -> str:
    return f"agent_provider_model:{LLM_CALLS}:error_ratio{w}"


def llm_calls_increase(w: str) -> str:
    return f"agent_provider_model:{LLM_CALLS}:increase{w}"


def objective(name: str) -> str:
    """The agent's objective with the contract's default filled in for agents that export none."""
    return f"agent:agent_objective:{name}"


TARGET_AGENTS = "instance_agent:agent_series:present"  # which agents each scrape target exports


# --------------------------------------------------------------------------- recording rules

DECIDED = 'status=~"completed|failed"'  # cancelled counts in neither side of the completion ratio


def _ratio(good_selector: str, all_selector: str, by: str, w: str) -> str:
    """good/all over a window; 0 when there is traffic but no good series, absent (never NaN) without traffic."""
    return (
        f"(\n  sum by ({by}) (rate({good_selector}[{w}]))\n"
        f"  or\n  0 * sum by ({by}) (rate({all_selector}[{w}]))\n)\n"
        f"/\n(sum by ({by}) (rate({all_selector}[{w}])) > 0)\n"
    )


def _median_of_earlier(p: Params, record: str, guard: str | None = None, minimum: int = 0) -> str:
    """The median of `record` one to `baseline_periods` periods ago, each kept only if `guard` >= minimum then.

    The same window of earlier periods (the same hour on earlier days by default) follows daily
    seasonality, and a change only enters the baseline after a whole period (and the median only
    after half of the periods), so the alert it feeds stays on while the change lasts.
    """
    parts = []
    for off in p.baseline_offsets():
        sel = f"{record} offset {off}"
        if guard:
            sel += f"\n    and on(agent)\n    {guard} offset {off} >= {minimum}"
        parts.append(f'  label_replace(\n    {sel},\n    "baseline_offset", "{off}", "", ""\n  )')
    return "quantile by (agent) (0.5,\n" + "\n  or\n".join(parts) + "\n)\n"


def recording_rules(p: Params) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []

    def rec(name: str, expr: str) -> None:
        rules.append({"record": name, "expr": expr})

    presence = "|".join(AGENT_PRESENCE)
    for name, default in semconv.DEFAULT_OBJECTIVES.items():
        rec(objective(name),
            f'{STRICTEST[name]} by (agent) ({OBJECTIVE}{{objective="{name}"}})\n'
            f"or on(agent)\n"
            f'{num(default)} * group by (agent) ({{__name__=~"{presence}",agent!=""}})\n')  # fmt: skip
    # Which agents each target exports, kept while the target is down (its own series are gone then),
    # so that AgentExporterDown names the agents whose stall it explains.
    rec(TARGET_AGENTS,
        f'group by (job, instance, agent) ({{__name__=~"{presence}",job="{p.job}",agent!=""}})\n'
        f"or\ngroup by (job, instance, agent) (\n  last_over_time({TARGET_AGENTS}[{STICKY_LOOKBACK}])\n"
        f'  and on(job, instance)\n  up{{job="{p.job}"}} == 0\n)\n')  # fmt: skip

    for w in p.completion_windows():
        rec(completion_ratio(w), _ratio(f'{FINISHED}{{status="completed"}}', f"{FINISHED}{{{DECIDED}}}", "agent", w))
        rec(finished_increase(w), f"sum by (agent) (increase({FINISHED}{{{DECIDED}}}[{w}]))\n")
    # Completed and failed per agent over the low-volume alerts' windows, a series born in the window
    # counted from 0: the library creates a status's series at its first execution with value 1,
    # which increase() cannot see, and for a rare agent that first execution is the news.
    for w in sorted({*p.all_failing_windows, p.low_volume_window}, key=seconds):
        sel = f"{FINISHED}{{{DECIDED}}}"
        born = f"({sel}\n    unless\n  {sel} offset {w})"
        rec(status_increase(w),
            f"sum by (agent, status) (\n  increase({sel}[{w}])\n    unless\n  {born}\n  or\n  {born}\n)\n")  # fmt: skip
    burn = sorted({w for b in p.burn_windows for w in (b.long, b.short)}, key=seconds)
    for w in burn:
        rec(burn_rate(w),
            f"(1 - {completion_ratio(w)})\n/ on(agent)\n"
            f"clamp_min(1 - {objective(COMPLETION_RATIO)}, {num(BUDGET_FLOOR)})\n")  # fmt: skip

    for w in p.ratio_windows():
        rec(
            trigger_completion_ratio(w),
            _ratio(f'{FINISHED}{{status="completed"}}', f"{FINISHED}{{{DECIDED}}}", "agent, trigger", w),
        )
        rec(trigger_finished_increase(w), f"sum by (agent, trigger) (increase({FINISHED}{{{DECIDED}}}[{w}]))\n")
        rec(runtime_p95(w),
            f"histogram_quantile(0.95, sum by (agent, le) (rate({DURATION}_bucket[{w}])))\n"
            f"and on(agent)\nsum by (agent) (rate({DURATION}_count[{w}])) > 0\n")  # fmt: skip
        rec(runtime_count(w), f"sum by (agent) (increase({DURATION}_count[{w}]))\n")
        rec(score_mean(w),
            f"sum by (agent) (rate({SCORE}_sum[{w}]))\n/\n"
            f"(sum by (agent) (rate({SCORE}_count[{w}])) > 0)\n")  # fmt: skip
        rec(score_count(w), f"sum by (agent) (increase({SCORE}_count[{w}]))\n")
        rec(tool_error_ratio(w), _ratio(f'{TOOL_CALLS}{{outcome=~"error|timeout"}}', TOOL_CALLS, "agent, tool", w))
        rec(tool_calls_increase(w), f"sum by (agent, tool) (increase({TOOL_CALLS}[{w}]))\n")
        rec(criterion_pass_ratio(w), _ratio(f'{EVALUATIONS}{{result="pass"}}', EVALUATIONS, "agent, evaluation", w))
    rec(started_increase(p.stall_window), f"sum by (agent) (increase({STARTED}[{p.stall_window}]))\n")

    # Baselines: the median of the same window on earlier periods, each with enough volume.
    w, n = p.window, p.min_executions
    rec(runtime_p95(w, baseline=True), _median_of_earlier(p, runtime_p95(w), runtime_count(w), n))
    rec(score_mean(w, baseline=True), _median_of_earlier(p, score_mean(w), score_count(w), n))
    rec(started_increase(p.stall_window, baseline=True), _median_of_earlier(p, started_increase(p.stall_window)))
    _cost_rules(p, rec)
    return rules


def _cost_rules(p: Params, rec: Any) -> None:
    """Spend per agent, its baseline, the budget burn rates, model-call error ratios (issue 24)."""
    # The daily budget has no default: only agents that export one have this series.
    rec(objective(DAILY_COST), f'min by (agent) ({OBJECTIVE}{{objective="{DAILY_COST}"}})\n')
    w = p.window
    rec(cost_increase(w), f"sum by (agent) (increase({COST}[{w}]))\n")
    rec(cost_increase(w, baseline=True), _median_of_earlier(p, cost_increase(w)))
    # Spend rate as a multiple of what the day's budget allows: 1 = the budget lasts exactly a day.
    for bw in sorted({x for b in p.budget_windows for x in (b.long, b.short)}, key=seconds):
        rec(budget_burn(bw),
            f"sum by (agent) (rate({COST}[{bw}])) * 86400\n/ on(agent)\n{objective(DAILY_COST)}\n")  # fmt: skip
    failed = f'{LLM_CALLS}{{outcome=~"error|timeout|rate_limited"}}'
    rec(llm_error_ratio(w), _ratio(failed, LLM_CALLS, "agent, provider, model", w))
    rec(llm_calls_increase(w), f"sum by (agent, provider, model) (increase({LLM_CALLS}[{w}]))\n")
