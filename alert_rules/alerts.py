"""The alerting rules and the rule file: each alert compares a recorded series with an objective or baseline.

Names, parameters and recording rules are in `alert_rules/rules.py`; docs/alerts.md says why.
"""

from __future__ import annotations

import json
from typing import Any

from alert_rules.alertmanager_config import dump
from alert_rules.rules import (
    COMPLETION_RATIO,
    DAILY_COST,
    DASHBOARDS,
    FINISHED,
    MAX_PENDING,
    MAX_RUNTIME,
    MAX_TOOL_ERROR,
    MIN_SCORE,
    PENDING_OLDEST,
    TARGET_AGENTS,
    TASKS_WAITING_OLDEST,
    Params,
    budget_burn,
    burn_rate,
    completion_ratio,
    cost_increase,
    criterion_pass_ratio,
    finished_increase,
    llm_calls_increase,
    llm_error_ratio,
    num,
    objective,
    recording_rules,
    runtime_count,
    runtime_p95,
    score_count,
    score_mean,
    seconds,
    started_increase,
    status_increase,
    tool_calls_increase,
    tool_error_ratio,
    trigger_completion_ratio,
    trigger_finished_increase,
)

# --------------------------------------------------------------------------- alerting rules


def _lookup_tmpl(record: str, fmt: str, query: str = "{record}{{agent=%q}}") -> str:
    """Template text printing a recorded value of the alert's agent (looked up when the alert is evaluated)."""
    return (
        f'{{{{ with printf "{query.format(record=record)}" $labels.agent | query }}}}'
        f"{{{{ . | first | value | {fmt} }}}}{{{{ end }}}}"
    )


def _worst_criterion_tmpl(w: str) -> str:
    """Template text naming the agent's evaluation criterion with the lowest pass rate over `w`
    (nothing when the agent recorded no pass/fail evaluations)."""
    return (
        f'{{{{ with printf "bottomk(1, {criterion_pass_ratio(w)}{{agent=%q}})" $labels.agent | query }}}}'
        "{{ with . | first }} Its worst criterion is {{ . | label \"evaluation\" }}, passed by "
        "{{ . | value | humanizePercentage }}"
        f" of its evaluations over the last {w}.{{{{ end }}}}{{{{ end }}}}"
    )


def _objective_tmpl(name: str, fmt: str) -> str:
    """Template text printing the agent's objective."""
    return _lookup_tmpl(objective(name), fmt)


def _jaeger_tmpl(p: Params, window: str, trigger: bool = False) -> str:
    """Template text for a Jaeger search of the agent's failed executions over the alert's window.

    Jaeger needs a service: the `service` label of the agent's series when the scrape target has
    one, else `Params.jaeger_service`. Tags select the execution spans of the agent that failed
    (and of the trigger); `start`/`end` are the window ending at the evaluation, in microseconds.
    """
    tags = '{"gen_ai.agent.name":%q,"task.status":"failed"' + (',"task.trigger":%q}' if trigger else "}")
    args = "$labels.agent" + (" $labels.trigger" if trigger else "")
    now_us = '{{ with query "time() * 1e6" }}{{ . | first | value | printf "%.0f" }}{{ end }}'
    start_us = (f'{{{{ with query "(time() - {num(seconds(window))}) * 1e6" }}}}'
                '{{ . | first | value | printf "%.0f" }}{{ end }}')  # fmt: skip
    return (
        f"{{{{ $service := {json.dumps(p.jaeger_service)} }}}}"
        f'{{{{ with printf `group by (service) ({FINISHED}{{agent=%q,service!=""}})` $labels.agent | query }}}}'
        '{{ $service = . | first | label "service" }}{{ end }}'
        f"{p.jaeger_url.rstrip('/')}/search?service={{{{ $service | urlquery }}}}"
        f"&tags={{{{ printf `{tags}` {args} | urlquery }}}}&start={start_us}&end={now_us}"
        f"&lookback=custom&limit={p.jaeger_limit}"
    )


# The id of the Tasks dashboard's waiting list (Grafana's `viewPanel=panel-<id>` opens it alone).
# A constant, so that rendering the rules needs no dashboards (and through them no library):
# tests/test_dashboards.py checks it is the id that dashboards/tasks.py gives that panel.
WAITING_PANEL_ID = 4


SCORE_FMT = 'printf "%.2f"'
JAEGER_ALERTS = ("AgentCompletionRateLow", "AgentCompletionErrorBudgetBurn", "AgentTriggerCompletionRateLow",
                 "AgentExecutionsAllFailing", "AgentLowVolumeFailures")


def alerting_rules(p: Params) -> list[dict[str, Any]]:
    w = p.window
    rules: list[dict[str, Any]] = []

    def dashboard(alert: str, var_trigger: bool = False) -> str:
        url = f"{p.grafana_url.rstrip('/')}/d/{DASHBOARDS[alert]}"
        if alert == "AgentExporterDown":
            return url
        url += "?var-agent={{ $labels.agent | urlquery }}"
        if alert == "AgentTasksStuckPending":  # straight to the waiting list, oldest first
            url += f"&viewPanel=panel-{WAITING_PANEL_ID}"
        if var_trigger:
            url += "&var-trigger={{ $labels.trigger | urlquery }}"
        return url

    def alert(name: str, expr: str, severity: str, summary: str, description: str, *,
              for_: str | None = None, labels: dict[str, str] | None = None,
              var_trigger: bool = False, jaeger_window: str | None = None) -> None:  # fmt: skip
        annotations = {
            "summary": summary,
            "description": description,
            "dashboard_url": dashboard(name, var_trigger),
            "runbook_url": f"{p.runbook_base}#{name.lower()}",
        }
        if jaeger_window:
            annotations["jaeger_url"] = _jaeger_tmpl(p, jaeger_window, trigger=var_trigger)
        rules.append({
            "alert": name,
            "expr": expr,
            "for": for_ if for_ is not None else p.for_(name),
            "labels": {"severity": severity, **(labels or {})},
            "annotations": annotations,
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
        jaeger_window=w,
    )
    for bw in p.burn_windows:
        alert(
            "AgentCompletionErrorBudgetBurn",
            f"{burn_rate(bw.long)} > {num(bw.factor)}\n"
            f"and on(agent)\n{burn_rate(bw.short)} > {num(bw.factor)}\n"
            f"and on(agent)\n{finished_increase(bw.long)} >= {n}\n",
            bw.severity,
            "An agent is burning its completion error budget too fast.",
            f"Agent {{{{ $labels.agent }}}} is failing executions {{{{ $value | humanize }}}}x as fast as its "
            f"completion objective of {_objective_tmpl(COMPLETION_RATIO, 'humanizePercentage')} allows, over "
            f"the last {bw.long} and the last {bw.short} (alert at {num(bw.factor)}x).",
            for_=bw.for_,
            labels={"long_window": bw.long, "short_window": bw.short},
            jaeger_window=bw.long,
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
        jaeger_window=w,
    )
    _low_volume_alerts(p, alert)
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
        f"{{{{ $value | {SCORE_FMT} }}}} (objective at least {_objective_tmpl(MIN_SCORE, SCORE_FMT)})."
        + _worst_criterion_tmpl(w),
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
    # The oldest wait of an agent and reason, wherever it is seen: in a process (waiting in memory)
    # or in the task store (parked by suspend(), in any process). One selector for both names so
    # that `min` sees every series: the oldest is the smallest timestamp, and the same execution or
    # the same store value reported by many processes counts once (min, not sum).
    oldest_wait = f'{{__name__=~"{PENDING_OLDEST}|{TASKS_WAITING_OLDEST}"}} > 0'
    alert(
        "AgentTasksStuckPending",
        f"time() - min by (agent, reason) ({oldest_wait})\n"
        f"  > on(agent) group_left() {objective(MAX_PENDING)}\n",
        "warning",
        "An execution has been pending longer than the agent's objective.",
        f"The oldest execution of agent {{{{ $labels.agent }}}} pending for reason {{{{ $labels.reason }}}} "
        f"has waited {{{{ $value | humanizeDuration }}}} "
        f"(objective at most {_objective_tmpl(MAX_PENDING, 'humanizeDuration')}).",
    )
    f = num(p.runtime_deviation_factor)
    alert(
        "AgentRuntimeDeviation",
        f"{runtime_p95(w)}\n  > on(agent) {f} * {runtime_p95(w, baseline=True)}\n"
        f"and on(agent)\n{runtime_count(w)} >= {n}\n",
        "warning",
        "An agent's p95 runtime is far above its own baseline.",
        f"The p95 runtime of agent {{{{ $labels.agent }}}} over the last {w} is {{{{ $value | humanizeDuration }}}}, "
        f"more than {f}x its baseline of {_lookup_tmpl(runtime_p95(w, baseline=True), 'humanizeDuration')} "
        f"(the median p95 of the same {w} on {p.baseline_phrase()}).",
    )
    d = num(p.score_drop)
    alert(
        "AgentEvaluationScoreDrop",
        f"{score_mean(w)}\n  < on(agent) {score_mean(w, baseline=True)} - {d}\n"
        f"and on(agent)\n{score_count(w)} >= {n}\n",
        "warning",
        "An agent's mean evaluation score fell well below its own baseline.",
        f"The mean evaluation score of agent {{{{ $labels.agent }}}} over the last {w} is "
        f"{{{{ $value | {SCORE_FMT} }}}}, down from {_lookup_tmpl(score_mean(w, baseline=True), SCORE_FMT)} "
        f"(the median of the same {w} on {p.baseline_phrase()}; alert on a drop of more than {d}).",
    )
    sw = p.stall_window
    alert(
        "AgentExecutionsStalled",
        f"{started_increase(sw, baseline=True)} >= {num(p.stall_min_expected)}\n"
        f"unless on(agent)\n{started_increase(sw)} > 0\n",
        "warning",
        "An agent that normally runs has started no executions.",
        f"Agent {{{{ $labels.agent }}}} has started no executions in the last {sw}, though it started "
        f"{{{{ $value | humanize }}}} in the same {sw} on {p.baseline_phrase()} (median).",
    )
    down = f'up{{job="{p.job}"}} == 0'
    alert(
        "AgentExporterDown",
        f"group by (job, instance, agent) (\n  {TARGET_AGENTS}\n  and on(job, instance)\n  {down}\n)\n"
        f"or\ngroup by (job, instance) ({down})\n  unless on(job, instance)\n  {TARGET_AGENTS}\n",
        "critical",
        "Prometheus cannot scrape an agent-exporter metrics endpoint.",
        f"Prometheus has failed to scrape {{{{ $labels.instance }}}} (job {p.job}) for {p.for_('AgentExporterDown')}; "
        "{{ with $labels.agent }}agent {{ . }}, which it exported, is not being watched there."
        "{{ else }}the agents in that process are not being watched.{{ end }}",
    )
    _cost_alerts(p, alert)
    return rules


def _cost_alerts(p: Params, alert: Any) -> None:
    """Spend and model-call alerts (issue 24; docs/alerts.md, "Cost")."""
    w, f, floor = p.window, num(p.cost_spike_factor), num(p.cost_spike_min_usd)
    usd = 'printf "%.2f"'
    alert(
        "AgentCostSpike",
        f"{cost_increase(w)}\n  > on(agent) {f} * {cost_increase(w, baseline=True)}\n"
        f"and on(agent)\n{cost_increase(w)} >= {floor}\n",
        "warning",
        "An agent is spending several times its usual amount on model calls.",
        f"Agent {{{{ $labels.agent }}}} spent ${{{{ $value | {usd} }}}} on model calls over the last {w}, "
        f"more than {f}x its usual ${_lookup_tmpl(cost_increase(w, baseline=True), usd)} "
        f"(the median of the same {w} on {p.baseline_phrase()}; alerts from ${floor} in {w}).",
    )
    for bw in p.budget_windows:
        alert(
            "AgentDailyBudgetBurn",
            f"{budget_burn(bw.long)} > {num(bw.factor)}\n"
            f"and on(agent)\n{budget_burn(bw.short)} > {num(bw.factor)}\n",
            bw.severity,
            "An agent is spending fast enough to exhaust its daily budget.",
            f"Agent {{{{ $labels.agent }}}} is spending {{{{ $value | humanize }}}}x as fast as its daily budget of "
            f"${_objective_tmpl(DAILY_COST, 'humanize')} allows, over the last {bw.long} and the last {bw.short} "
            f"(alert at {num(bw.factor)}x: the budget would last {num(24 / bw.factor)} h).",
            for_=bw.for_,
            labels={"long_window": bw.long, "short_window": bw.short},
        )
    alert(
        "AgentLLMErrorsHigh",
        f"{llm_error_ratio(w)} > {num(p.max_llm_error_ratio)}\n"
        f"and on(agent, provider, model)\n{llm_calls_increase(w)} >= {p.min_llm_calls}\n",
        "warning",
        "Calls to a model fail or are rate-limited often.",
        f"{{{{ $value | humanizePercentage }}}} of the calls agent {{{{ $labels.agent }}}} made to model "
        f"{{{{ $labels.model }}}} ({{{{ $labels.provider }}}}) over the last {w} failed, timed out or were "
        f"rate-limited (alert above {num(p.max_llm_error_ratio * 100)} %).",
    )


def _low_volume_alerts(p: Params, alert: Any) -> None:
    """The two completion alerts for agents below the ratio alerts' volume guard (docs/alerts.md)."""
    w, n, m = p.window, p.min_executions, p.all_failing_min
    windows = sorted(p.all_failing_windows, key=seconds)

    def count(window: str, status: str) -> str:
        return f'sum by (agent) ({status_increase(window)}{{status="{status}"}})'

    # `or` keeps the first (shortest) window's series per agent: $value is the failures in it.
    all_failed = "\nor\n".join(
        f"  {count(aw, 'failed')} >= {m}\n  unless on(agent)\n  {count(aw, 'completed')} > 0" for aw in windows
    )
    listed = ", ".join(windows)
    alert(
        "AgentExecutionsAllFailing",
        f"(\n{all_failed}\n)\nunless on(agent)\n{finished_increase(w)} >= {n}\n",
        "critical",
        "A low-volume agent failed every execution it finished recently.",
        f"Agent {{{{ $labels.agent }}}} failed the last {{{{ $value | humanize }}}} executions it finished and "
        f"completed none: the shortest of the windows {listed} holding at least {m} of its executions has no "
        f"completed one (regime: all failing, fewer than {n} executions in {w}).",
        labels={"regime": "all-failing"},
        jaeger_window=windows[-1],
    )
    lw = p.low_volume_window
    finished = f"sum by (agent) ({status_increase(lw)})"
    alert(
        "AgentLowVolumeFailures",
        f"(\n  {count(lw, 'completed')}\n  or\n  0 * {count(lw, 'failed')}\n)\n/\n({finished} > 0)\n"
        f"  < on(agent) {objective(COMPLETION_RATIO)}\nand on(agent)\n{finished} < {n}\n",
        "warning",
        "A low-volume agent fails more often than its completion objective allows.",
        f"Agent {{{{ $labels.agent }}}} completed {{{{ $value | humanizePercentage }}}} of the "
        f"{_lookup_tmpl(status_increase(lw), 'humanize', 'sum({record}{{agent=%q}})')} executions it finished over "
        f"the last {lw} (objective {_objective_tmpl(COMPLETION_RATIO, 'humanizePercentage')}; regime: low volume, "
        f"fewer than {n} executions in {lw}, too few for the ratio alerts).",
        labels={"regime": "low-volume"},
        jaeger_window=lw,
    )


# --------------------------------------------------------------------------- YAML output

HEADER = (
    "# GENERATED by alert_rules/render.py from exporter/semconv.py: do not edit by hand.\n"
    "# Change render.py (or its Params) and run `python3 alert_rules/render.py`.\n"
)


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
    return HEADER + dump({"groups": groups})
