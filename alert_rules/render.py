"""Render the Prometheus rules and the Alertmanager configuration from one set of parameters.

The committed files (`alert_rules/agent-rules.yml`, `alert_rules/alertmanager/alertmanager.yml`)
are this module's output with the default `Params()` / `AlertmanagerParams()`; a test checks that
they are current. An end-to-end test renders the same rules with short windows instead::

    from alert_rules.render import Params, render_rules
    rules_yaml = render_rules(Params.short(window="1m", for_="0s", min_executions=5))

Run `python3 alert_rules/render.py` to rewrite the committed files, `--check` to only compare.
Metric names, objective names and defaults, alert names and the scrape job come from
`exporter/semconv.py` (loaded by path, so rendering needs none of the library's dependencies).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES_FILE = HERE / "agent-rules.yml"
ALERTMANAGER_FILE = HERE / "alertmanager" / "alertmanager.yml"


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
PENDING_OLDEST = semconv.EXECUTION_PENDING_OLDEST.name
OBJECTIVE = semconv.OBJECTIVE.name

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

# Grafana dashboard uids (built in dashboards/), one per alert.
DASHBOARDS = {
    "AgentCompletionRateLow": "agent-overview",
    "AgentCompletionErrorBudgetBurn": "agent-completion-trends",
    "AgentTriggerCompletionRateLow": "agent-overview",
    "AgentRuntimeHigh": "agent-runtime",
    "AgentEvaluationScoreLow": "agent-evaluations",
    "AgentToolErrorRateHigh": "agent-tools",
    "AgentTasksStuckPending": "agent-runtime",
    "AgentRuntimeDeviation": "agent-runtime",
    "AgentEvaluationScoreDrop": "agent-evaluations",
    "AgentExecutionsStalled": "agent-overview",
    "AgentExporterDown": "agent-overview",
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
}  # AgentCompletionErrorBudgetBurn takes its `for` from each BurnWindow

_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as `1h30m`; ValueError if it is not one."""
    parts = _DURATION_RE.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def _num(x: float) -> str:
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


@dataclass(frozen=True)
class Params:
    """Everything the rules can be rendered with. Defaults are the committed production values."""

    window: str = "1h"  # threshold alerts: completion, trigger, runtime, score, tool errors
    extra_windows: tuple[str, ...] = ("5m",)  # more recording-rule windows for the dashboards
    burn_windows: tuple[BurnWindow, ...] = DEFAULT_BURN_WINDOWS
    baseline_window: str = "1d"  # trailing baseline, ending where `window` begins
    runtime_deviation_factor: float = 1.5  # p95 above this multiple of its baseline
    score_drop: float = 0.10  # mean score this far (absolute) below its baseline
    stall_window: str = "1h"  # no execution started for this long ...
    stall_lookback: str = "1d"  # ... by an agent that, over this span, ...
    stall_min_expected: float = 5  # ... averaged at least this many starts per stall_window
    min_executions: int = 10  # volume guard: finished executions (or scores) in the window
    min_tool_calls: int = 20  # volume guard: calls of one tool in the window
    for_durations: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FOR))
    interval: str | None = None  # rule group evaluation interval; None: Prometheus' global one
    job: str = semconv.SCRAPE_JOB
    grafana_url: str = "http://localhost:3000"
    runbook_base: str = "https://github.com/agent-exporter/agent-exporter/blob/main/docs/runbook.md"

    def __post_init__(self) -> None:
        for d in (self.window, *self.extra_windows, self.baseline_window, self.stall_window,
                  self.stall_lookback, *self.for_durations.values()):  # fmt: skip
            seconds(d)
        for b in self.burn_windows:
            seconds(b.long), seconds(b.short), seconds(b.for_)
            if b.severity not in ("critical", "warning"):
                raise ValueError(f"burn window severity must be critical or warning: {b.severity!r}")
            if seconds(b.short) >= seconds(b.long):
                raise ValueError(f"burn window short {b.short} must be shorter than long {b.long}")
        unknown = set(self.for_durations) - set(semconv.ALERTS)
        if unknown:
            raise ValueError(f"for_durations names unknown alerts: {sorted(unknown)}")

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
            baseline_window="5m",
            stall_window="1m",
            stall_lookback="5m",
            min_executions=min_executions,
            min_tool_calls=min_executions,
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


# --------------------------------------------------------------------------- recording rule names


def completion_ratio(w: str) -> str:
    return f"agent:agent_execution_completion:ratio_rate{w}"


def trigger_completion_ratio(w: str) -> str:
    return f"agent_trigger:agent_execution_completion:ratio_rate{w}"


def finished_increase(w: str) -> str:
    return f"agent:agent_executions_finished:increase{w}"


def trigger_finished_increase(w: str) -> str:
    return f"agent_trigger:agent_executions_finished:increase{w}"


def burn_rate(w: str) -> str:
    return f"agent:agent_execution_completion:burnrate{w}"


def runtime_p95(w: str, offset: str | None = None) -> str:
    return f"agent:agent_execution_duration_seconds:p95_rate{w}" + (f"_offset{offset}" if offset else "")


def runtime_count(w: str, offset: str | None = None) -> str:
    suffix = f"_offset{offset}" if offset else ""
    return f"agent:agent_execution_duration_seconds_count:increase{w}{suffix}"


def score_mean(w: str, offset: str | None = None) -> str:
    return f"agent:agent_execution_evaluation_score:mean_rate{w}" + (f"_offset{offset}" if offset else "")


def score_count(w: str, offset: str | None = None) -> str:
    suffix = f"_offset{offset}" if offset else ""
    return f"agent:agent_execution_evaluation_score_count:increase{w}{suffix}"


def tool_error_ratio(w: str) -> str:
    return f"agent_tool:agent_tool_call_errors:ratio_rate{w}"


def tool_calls_increase(w: str) -> str:
    return f"agent_tool:agent_tool_calls:increase{w}"


def objective(name: str) -> str:
    """The agent's objective with the contract's default filled in for agents that export none."""
    return f"agent:agent_objective:{name}"


# --------------------------------------------------------------------------- recording rules

DECIDED = 'status=~"completed|failed"'  # cancelled counts in neither side of the completion ratio


def _ratio(good_selector: str, all_selector: str, by: str, w: str) -> str:
    """good/all over a window; 0 (not absent) when there is traffic but no good series yet."""
    return (
        f"(\n  sum by ({by}) (rate({good_selector}[{w}]))\n"
        f"  or\n  0 * sum by ({by}) (rate({all_selector}[{w}]))\n)\n"
        f"/\nsum by ({by}) (rate({all_selector}[{w}]))\n"
    )


def recording_rules(p: Params) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []

    def rec(name: str, expr: str) -> None:
        rules.append({"record": name, "expr": expr})

    presence = "|".join(AGENT_PRESENCE)
    for name, default in semconv.DEFAULT_OBJECTIVES.items():
        rec(objective(name),
            f'{STRICTEST[name]} by (agent) ({OBJECTIVE}{{objective="{name}"}})\n'
            f"or on(agent)\n"
            f'{_num(default)} * group by (agent) ({{__name__=~"{presence}",agent!=""}})\n')  # fmt: skip

    for w in p.completion_windows():
        rec(completion_ratio(w), _ratio(f'{FINISHED}{{status="completed"}}', f"{FINISHED}{{{DECIDED}}}", "agent", w))
        rec(finished_increase(w), f"sum by (agent) (increase({FINISHED}{{{DECIDED}}}[{w}]))\n")
    burn = sorted({w for b in p.burn_windows for w in (b.long, b.short)}, key=seconds)
    for w in burn:
        rec(burn_rate(w),
            f"(1 - {completion_ratio(w)})\n/ on(agent)\n(1 - {objective(COMPLETION_RATIO)})\n")  # fmt: skip

    for w in p.ratio_windows():
        rec(
            trigger_completion_ratio(w),
            _ratio(f'{FINISHED}{{status="completed"}}', f"{FINISHED}{{{DECIDED}}}", "agent, trigger", w),
        )
        rec(trigger_finished_increase(w), f"sum by (agent, trigger) (increase({FINISHED}{{{DECIDED}}}[{w}]))\n")
        rec(runtime_p95(w), f"histogram_quantile(0.95, sum by (agent, le) (rate({DURATION}_bucket[{w}])))\n")
        rec(runtime_count(w), f"sum by (agent) (increase({DURATION}_count[{w}]))\n")
        rec(score_mean(w), f"sum by (agent) (rate({SCORE}_sum[{w}]))\n/\nsum by (agent) (rate({SCORE}_count[{w}]))\n")
        rec(score_count(w), f"sum by (agent) (increase({SCORE}_count[{w}]))\n")
        rec(tool_error_ratio(w), _ratio(f'{TOOL_CALLS}{{outcome=~"error|timeout"}}', TOOL_CALLS, "agent, tool", w))
        rec(tool_calls_increase(w), f"sum by (agent, tool) (increase({TOOL_CALLS}[{w}]))\n")

    # Baselines: the `baseline_window` that ends where the alert `window` begins.
    b, o = p.baseline_window, p.window
    rec(runtime_p95(b, o), f"histogram_quantile(0.95, sum by (agent, le) (rate({DURATION}_bucket[{b}] offset {o})))\n")
    rec(runtime_count(b, o), f"sum by (agent) (increase({DURATION}_count[{b}] offset {o}))\n")
    rec(score_mean(b, o),
        f"sum by (agent) (rate({SCORE}_sum[{b}] offset {o}))\n/\n"
        f"sum by (agent) (rate({SCORE}_count[{b}] offset {o}))\n")  # fmt: skip
    rec(score_count(b, o), f"sum by (agent) (increase({SCORE}_count[{b}] offset {o}))\n")
    return rules


# --------------------------------------------------------------------------- alerting rules


def _objective_tmpl(name: str, fmt: str) -> str:
    """Template text printing the agent's objective (looked up at notification time)."""
    return (
        f'{{{{ with printf "{objective(name)}{{agent=%q}}" $labels.agent | query }}}}'
        f"{{{{ . | first | value | {fmt} }}}}{{{{ end }}}}"
    )


def _lookup_tmpl(record: str, fmt: str) -> str:
    return (
        f'{{{{ with printf "{record}{{agent=%q}}" $labels.agent | query }}}}'
        f"{{{{ . | first | value | {fmt} }}}}{{{{ end }}}}"
    )


SCORE_FMT = 'printf "%.2f"'


def alerting_rules(p: Params) -> list[dict[str, Any]]:
    w = p.window
    rules: list[dict[str, Any]] = []

    def dashboard(alert: str, var_trigger: bool = False) -> str:
        url = f"{p.grafana_url.rstrip('/')}/d/{DASHBOARDS[alert]}"
        if alert == "AgentExporterDown":
            return url
        url += "?var-agent={{ $labels.agent | urlquery }}"
        if var_trigger:
            url += "&var-trigger={{ $labels.trigger | urlquery }}"
        return url

    def alert(name: str, expr: str, severity: str, summary: str, description: str, *,
              for_: str | None = None, labels: dict[str, str] | None = None,
              var_trigger: bool = False) -> None:  # fmt: skip
        rules.append({
            "alert": name,
            "expr": expr,
            "for": for_ if for_ is not None else p.for_(name),
            "labels": {"severity": severity, **(labels or {})},
            "annotations": {
                "summary": summary,
                "description": description,
                "dashboard_url": dashboard(name, var_trigger),
                "runbook_url": f"{p.runbook_base}#{name.lower()}",
            },
        })  # fmt: skip

    n, nt = p.min_executions, p.min_tool_calls
    alert(
        "AgentCompletionRateLow",
        f"{completion_ratio(w)}\n  < on(agent) {objective(COMPLETION_RATIO)}\n"
        f"and on(agent)\n{finished_increase(w)} >= {n}\n",
        "critical",
        "An agent completes fewer executions than its objective.",
        f"Agent {{{{ $labels.agent }}}} completed {{{{ $value | humanizePercentage }}}} of its finished "
        f"executions over the last {w} (objective {_objective_tmpl(COMPLETION_RATIO, 'humanizePercentage')}).",
    )
    for bw in p.burn_windows:
        alert(
            "AgentCompletionErrorBudgetBurn",
            f"{burn_rate(bw.long)} > {_num(bw.factor)}\n"
            f"and on(agent)\n{burn_rate(bw.short)} > {_num(bw.factor)}\n"
            f"and on(agent)\n{finished_increase(bw.long)} >= {n}\n",
            bw.severity,
            "An agent is burning its completion error budget too fast.",
            f"Agent {{{{ $labels.agent }}}} is failing executions {{{{ $value | humanize }}}}x as fast as its "
            f"completion objective of {_objective_tmpl(COMPLETION_RATIO, 'humanizePercentage')} allows, over "
            f"the last {bw.long} and the last {bw.short} (alert at {_num(bw.factor)}x).",
            for_=bw.for_,
            labels={"long_window": bw.long, "short_window": bw.short},
        )
    alert(
        "AgentTriggerCompletionRateLow",
        f"{trigger_completion_ratio(w)}\n  < on(agent) group_left() {objective(COMPLETION_RATIO)}\n"
        f"and on(agent, trigger)\n{trigger_finished_increase(w)} >= {n}\n",
        "warning",
        "Executions from one trigger complete less often than the agent's objective.",
        f"Agent {{{{ $labels.agent }}}} completed {{{{ $value | humanizePercentage }}}} of its executions "
        f"triggered by {{{{ $labels.trigger }}}} over the last {w} "
        f"(objective {_objective_tmpl(COMPLETION_RATIO, 'humanizePercentage')}).",
        var_trigger=True,
    )
    alert(
        "AgentRuntimeHigh",
        f"{runtime_p95(w)}\n  > on(agent) {objective(MAX_RUNTIME)}\nand on(agent)\n{runtime_count(w)} >= {n}\n",
        "warning",
        "An agent's p95 execution runtime is above its objective.",
        f"The p95 runtime of agent {{{{ $labels.agent }}}} over the last {w} is {{{{ $value | humanizeDuration }}}} "
        f"(objective at most {_objective_tmpl(MAX_RUNTIME, 'humanizeDuration')}).",
    )
    alert(
        "AgentEvaluationScoreLow",
        f"{score_mean(w)}\n  < on(agent) {objective(MIN_SCORE)}\nand on(agent)\n{score_count(w)} >= {n}\n",
        "warning",
        "An agent's mean evaluation score is below its objective.",
        f"The mean evaluation score of agent {{{{ $labels.agent }}}} over the last {w} is "
        f"{{{{ $value | {SCORE_FMT} }}}} (objective at least {_objective_tmpl(MIN_SCORE, SCORE_FMT)}).",
    )
    alert(
        "AgentToolErrorRateHigh",
        f"{tool_error_ratio(w)}\n  > on(agent) group_left() {objective(MAX_TOOL_ERROR)}\n"
        f"and on(agent, tool)\n{tool_calls_increase(w)} >= {nt}\n",
        "warning",
        "Calls to a tool fail more often than the agent's objective allows.",
        f"{{{{ $value | humanizePercentage }}}} of the calls agent {{{{ $labels.agent }}}} made to tool "
        f"{{{{ $labels.tool }}}} over the last {w} failed with an error or timeout "
        f"(objective at most {_objective_tmpl(MAX_TOOL_ERROR, 'humanizePercentage')}).",
    )
    alert(
        "AgentTasksStuckPending",
        f"time() - min by (agent, reason) ({PENDING_OLDEST} > 0)\n"
        f"  > on(agent) group_left() {objective(MAX_PENDING)}\n",
        "warning",
        "An execution has been pending longer than the agent's objective.",
        f"The oldest execution of agent {{{{ $labels.agent }}}} pending for reason {{{{ $labels.reason }}}} "
        f"has waited {{{{ $value | humanizeDuration }}}} "
        f"(objective at most {_objective_tmpl(MAX_PENDING, 'humanizeDuration')}).",
    )
    b = p.baseline_window
    f = _num(p.runtime_deviation_factor)
    alert(
        "AgentRuntimeDeviation",
        f"{runtime_p95(w)}\n  > on(agent) {f} * {runtime_p95(b, w)}\n"
        f"and on(agent)\n{runtime_count(w)} >= {n}\n"
        f"and on(agent)\n{runtime_count(b, w)} >= {n}\n",
        "warning",
        "An agent's p95 runtime is far above its own baseline.",
        f"The p95 runtime of agent {{{{ $labels.agent }}}} over the last {w} is {{{{ $value | humanizeDuration }}}}, "
        f"more than {f}x its baseline of {_lookup_tmpl(runtime_p95(b, w), 'humanizeDuration')} "
        f"(p95 over the {b} before).",
    )
    d = _num(p.score_drop)
    alert(
        "AgentEvaluationScoreDrop",
        f"{score_mean(w)}\n  < on(agent) {score_mean(b, w)} - {d}\n"
        f"and on(agent)\n{score_count(w)} >= {n}\n"
        f"and on(agent)\n{score_count(b, w)} >= {n}\n",
        "warning",
        "An agent's mean evaluation score fell well below its own baseline.",
        f"The mean evaluation score of agent {{{{ $labels.agent }}}} over the last {w} is "
        f"{{{{ $value | {SCORE_FMT} }}}}, down from {_lookup_tmpl(score_mean(b, w), SCORE_FMT)} over the "
        f"{b} before (alert on a drop of more than {d}).",
    )
    sw, lb = p.stall_window, p.stall_lookback
    alert(
        "AgentExecutionsStalled",
        f"sum by (agent) (rate({STARTED}[{lb}])) * {_num(seconds(sw))} >= {_num(p.stall_min_expected)}\n"
        f"unless on(agent)\nsum by (agent) (increase({STARTED}[{sw}])) > 0\n",
        "warning",
        "An agent that normally runs has started no executions.",
        f"Agent {{{{ $labels.agent }}}} has started no executions in the last {sw}, though over the last {lb} "
        f"it started {{{{ $value | humanize }}}} per {sw} on average.",
    )
    alert(
        "AgentExporterDown",
        f'up{{job="{p.job}"}} == 0\n',
        "critical",
        "Prometheus cannot scrape an agent-exporter metrics endpoint.",
        f"Prometheus has failed to scrape {{{{ $labels.instance }}}} (job {p.job}) for {p.for_('AgentExporterDown')}; "
        f"the agents in that process are not being watched.",
    )
    return rules


# --------------------------------------------------------------------------- YAML output


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)

HEADER = (
    "# GENERATED by alert_rules/render.py from exporter/semconv.py: do not edit by hand.\n"
    "# Change render.py (or its Params) and run `python3 alert_rules/render.py`.\n"
)


def _dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100_000, allow_unicode=True)


def render_rules(params: Params | None = None) -> str:
    """The Prometheus rule file (recording and alerting groups) as YAML text."""
    p = params or Params()
    groups: list[dict[str, Any]] = []
    for name, rules in (("agent-exporter.recording", recording_rules(p)),
                        ("agent-exporter.alerts", alerting_rules(p))):  # fmt: skip
        group: dict[str, Any] = {"name": name}
        if p.interval:
            group["interval"] = p.interval
        group["rules"] = rules
        groups.append(group)
    return HEADER + _dump({"groups": groups})


# --------------------------------------------------------------------------- Alertmanager


@dataclass(frozen=True)
class AlertmanagerParams:
    """The Alertmanager configuration's knobs; the defaults are the committed file."""

    slack_api_url_file: str = "/etc/alertmanager/secrets/slack_webhook_url"
    # A second webhook (another channel) for slack-critical; None: both receivers use the global one.
    critical_slack_api_url_file: str | None = None
    templates: str = "templates/*.tmpl"  # relative paths resolve against the config file's folder
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    critical_repeat_interval: str = "1h"
    resolve_timeout: str = "5m"

    @classmethod
    def short(cls, slack_api_url_file: str, **overrides: Any) -> AlertmanagerParams:
        """Seconds instead of minutes, templates by absolute path: for an end-to-end test."""
        values: dict[str, Any] = dict(
            slack_api_url_file=slack_api_url_file,
            templates=str(HERE / "alertmanager" / "templates" / "*.tmpl"),
            group_wait="1s", group_interval="1s", repeat_interval="1h", critical_repeat_interval="1h",
        )  # fmt: skip
        values.update(overrides)
        return cls(**values)


def _slack(api_url_file: str | None = None) -> dict[str, Any]:
    return {
        **({"api_url_file": api_url_file} if api_url_file else {}),
        "send_resolved": True,
        "color": '{{ template "agent.slack.color" . }}',
        "title": '{{ template "agent.slack.title" . }}',
        "title_link": '{{ template "agent.slack.title_link" . }}',
        "text": '{{ template "agent.slack.text" . }}',
        "fallback": '{{ template "agent.slack.title" . }}',
        "actions": [
            {"type": "button", "text": "Dashboard", "url": "{{ (index .Alerts 0).Annotations.dashboard_url }}"},
            {"type": "button", "text": "Runbook", "url": "{{ (index .Alerts 0).Annotations.runbook_url }}"},
        ],
    }


def render_alertmanager(params: AlertmanagerParams | None = None) -> str:
    """The Alertmanager configuration as YAML text."""
    a = params or AlertmanagerParams()
    doc = {
        "global": {"resolve_timeout": a.resolve_timeout, "slack_api_url_file": a.slack_api_url_file},
        "templates": [a.templates],
        "route": {
            "receiver": "slack-warning",
            "group_by": ["alertname", "agent"],
            "group_wait": a.group_wait,
            "group_interval": a.group_interval,
            "repeat_interval": a.repeat_interval,
            "routes": [
                {
                    "matchers": ['severity="critical"'],
                    "receiver": "slack-critical",
                    "repeat_interval": a.critical_repeat_interval,
                },
                {"matchers": ['severity="warning"'], "receiver": "slack-warning"},
            ],
        },  # fmt: skip
        "inhibit_rules": [
            {  # the fast burn (or any critical) silences the slow one of the same alert and agent
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "agent"],
            },
            {  # the whole agent failing makes the per-trigger alerts noise
                "source_matchers": ['alertname="AgentCompletionRateLow"'],
                "target_matchers": ['alertname="AgentTriggerCompletionRateLow"'],
                "equal": ["agent"],
            },
            {  # no scrape, no starts seen: the exporter being down is the news
                "source_matchers": ['alertname="AgentExporterDown"'],
                "target_matchers": ['alertname="AgentExecutionsStalled"'],
            },
        ],
        "receivers": [
            {"name": "slack-critical", "slack_configs": [_slack(a.critical_slack_api_url_file)]},
            {"name": "slack-warning", "slack_configs": [_slack()]},
        ],
    }
    header = (
        "# GENERATED by alert_rules/render.py: do not edit by hand (see docs/alerts.md).\n"
        "# The Slack webhook URL is read from slack_api_url_file at send time; never commit it.\n"
    )
    return header + _dump(doc)


# --------------------------------------------------------------------------- command line


def outputs() -> dict[Path, str]:
    """The committed files and what they should contain."""
    return {RULES_FILE: render_rules(Params()), ALERTMANAGER_FILE: render_alertmanager()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print("stale: " + ", ".join(str(s.relative_to(ROOT)) for s in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["AlertmanagerParams", "BurnWindow", "Params", "render_alertmanager", "render_rules"]
