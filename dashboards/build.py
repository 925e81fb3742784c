"""Generate the Grafana dashboards in this directory from the library's constants.

The shared pieces are in `dashboards/panels.py`, the Tasks and versions dashboards in
`dashboards/tasks.py` and `dashboards/versions.py`, the query expansion for the live tests in
`dashboards/queries.py`; this module builds the other dashboards and writes them all.

Run `python -m dashboards.build` to rewrite the committed JSON, `python -m dashboards.build --check`
to fail when it is stale (`python dashboards/build.py` works too). It reads the metric names from the
library (`exporter.semconv`). Targets Grafana 11.6 (dashboard schemaVersion 41).

The Tasks dashboard (`agent-tasks`) is different: its panels are SQL against the task store's
PostgreSQL table (`configure(task_store=...)`), through the PostgreSQL data source; `iter_sql_queries()`
and `iter_sql_variable_queries()` expand them the way Grafana does, for a live test against a real
PostgreSQL. Every other query references raw library metrics (named by `exporter.semconv`), plus `ALERTS` and `up`,
so the dashboards work with or without the recording rules. Rates use `$__rate_interval`, except on
the completion-trends dashboard, where the custom `$aggregation` variable (1d, 7d, 30d) is the window
on purpose: each point sums the trailing day, week or 30 days. `iter_queries()` yields every panel
query with its variables substituted, for a live test against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python dashboards/build.py`: the repository root is the import root
    sys.path.insert(0, str(ROOT_DIR))

from dashboards.cost import cost  # noqa: E402
from dashboards.panels import (  # noqa: E402
    AGENT,
    AGENT_VAR,
    AGGREGATION_VAR,
    DASHBOARD_DIR,
    EXEC_DURATION,
    EXEC_SCORE,
    EXTRA_METRICS,
    FAILURES,
    FINISHED,
    OBJ,
    PENDING_DURATION,
    STARTED,
    STEP_DURATION,
    STEP_SCORE,
    TAG,
    TITLES,
    TOOL,
    TOOL_DURATION,
    TOOL_VAR,
    TRENDS_STEP,
    TRIGGER,
    TRIGGER_VAR,
    UIDS,
    Grid,
    agg,
    aggregation_var,
    completion_ratio,
    dashboard,
    eq,
    heatmap,
    mean,
    objective_target,
    per_minute,
    piechart,
    quantile,
    ranking,
    rate,
    ratio,
    re_,
    sel,
    stat,
    table_instant,
    target,
    thresholds,
    timeseries,
)
from dashboards.queries import (  # noqa: E402
    PanelQuery,
    SqlQuery,
    expand_sql,
    iter_annotation_queries,
    iter_queries,
    iter_sql_queries,
    iter_sql_variable_queries,
    substitute,
)
from dashboards.tasks import NOT_KEPT, POSTGRES_TYPE, TASKS_DATASOURCE_UID, WAITING_TITLE, tasks  # noqa: E402
from dashboards.versions import versions  # noqa: E402
from exporter import semconv as sc  # noqa: E402

# Names the tests and the other generators read from here, defined in the modules above.
__all__ = [
    "AGGREGATION_VAR",
    "expand_sql",
    "EXTRA_METRICS",
    "iter_annotation_queries",
    "iter_queries",
    "iter_sql_queries",
    "iter_sql_variable_queries",
    "NOT_KEPT",
    "OBJ",
    "PanelQuery",
    "POSTGRES_TYPE",
    "SqlQuery",
    "substitute",
    "TAG",
    "tasks",
    "TASKS_DATASOURCE_UID",
    "TITLES",
    "TRENDS_STEP",
    "UIDS",
    "versions",
    "WAITING_TITLE",
]

AGENT_REASON = f"{sc.LABEL_AGENT}, {sc.LABEL_REASON}"
EXEC_M = (AGENT, TRIGGER)  # matchers of execution-level metrics
MAX_RUNTIME = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MAX_RUNTIME_SECONDS]
MIN_SCORE = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MIN_EVALUATION_SCORE]
FIRING = sel("ALERTS", 'alertname=~"Agent.*"', eq("alertstate", "firing"))


def overview() -> dict[str, Any]:
    g = Grid()
    g.row(4)
    g.add(4, stat(
        "Completion rate",
        "completed / (completed + failed) over the selected agents and triggers, now. "
        "Cancelled executions count on neither side.",
        completion_ratio(""), "percentunit", min_=0, max_=1,
        steps=thresholds(("red", None), ("orange", 0.9), ("green", 0.95)),
    ))  # fmt: skip
    g.add(4, stat(
        "p95 runtime",
        "95th percentile of trigger-to-end runtime (time pending excluded), now.",
        quantile(0.95, EXEC_DURATION, EXEC_M, ""), "s",
        steps=thresholds(("green", None), ("red", MAX_RUNTIME)),
    ))  # fmt: skip
    g.add(4, stat(
        "Mean evaluation score",
        "Mean of the executions' evaluation scores (0-1), now.",
        mean(EXEC_SCORE, EXEC_M, ""), "percentunit", min_=0, max_=1,
        steps=thresholds(("red", None), ("green", MIN_SCORE)),
    ))  # fmt: skip
    g.add(4, stat(
        "In progress now",
        "Executions running now, summed over every instance.",
        agg("", sel(sc.EXECUTIONS_IN_PROGRESS.name, AGENT)), "short",
    ))  # fmt: skip
    g.add(4, stat(
        "Pending now",
        "Executions waiting now (queued or awaiting approval), summed over every instance.",
        agg("", sel(sc.EXECUTIONS_PENDING.name, AGENT)), "short",
    ))  # fmt: skip
    g.add(4, stat(
        "Firing alerts",
        "Agent* alerts firing now in Prometheus (0 when none).",
        f"count({FIRING}) or vector(0)", "short",
        steps=thresholds(("green", None), ("red", 1)),
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Completion rate vs objective",
        "Per agent: completed / (completed + failed). The dashed line is the agent's "
        "completion_ratio objective (agent_objective); below it, AgentCompletionRateLow fires.",
        [
            target(completion_ratio(sc.LABEL_AGENT), "{{agent}}"),
            objective_target(sc.OBJECTIVE_COMPLETION_RATIO),
        ],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Runtime: average and p95 vs objective",
        "Per agent: mean and 95th percentile of execution runtime (pending time excluded). "
        "Dashed: max_runtime_seconds. Exemplar points on p95 open the execution's trace in Jaeger.",
        [
            target(mean(EXEC_DURATION, EXEC_M, sc.LABEL_AGENT), "{{agent}} average"),
            target(quantile(0.95, EXEC_DURATION, EXEC_M, sc.LABEL_AGENT), "{{agent}} p95", "B",
                   exemplar=True),
            objective_target(sc.OBJECTIVE_MAX_RUNTIME_SECONDS),
        ],
        "s", min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Evaluation score vs objective",
        "Per agent: mean evaluation score of executions (0-1). Dashed: min_evaluation_score.",
        [
            target(mean(EXEC_SCORE, EXEC_M, sc.LABEL_AGENT), "{{agent}}"),
            objective_target(sc.OBJECTIVE_MIN_EVALUATION_SCORE),
        ],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Completion rate by trigger",
        "completed / (completed + failed) per trigger (email, webhook, manual, timer, api) over "
        "the selected agents: shows one trigger failing while the agent overall looks fine.",
        [target(completion_ratio(sc.LABEL_TRIGGER), "{{trigger}}")],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(8)
    g.add(8, timeseries(
        "Executions by status",
        "Executions ending per minute, by terminal status (completed, failed, cancelled).",
        [target(per_minute(agg(sc.LABEL_STATUS, rate(sel(FINISHED, *EXEC_M)))), "{{status}}")],
        "opm", stack=True, min_=0,
    ))  # fmt: skip
    g.add(8, timeseries(
        "In progress and pending now",
        "Executions running now per agent, and waiting now per agent and reason "
        "(queued, approval), summed over every instance; with a task store, also every "
        "execution waiting in the store, suspended ones included (the same value from every "
        "process: max, not sum).",
        [
            target(agg(sc.LABEL_AGENT, sel(sc.EXECUTIONS_IN_PROGRESS.name, AGENT)),
                   "{{agent}} in progress"),
            target(agg(AGENT_REASON, sel(sc.EXECUTIONS_PENDING.name, AGENT)),
                   "{{agent}} pending ({{reason}})", "B"),
            target(agg(AGENT_REASON, sel(sc.TASKS_WAITING.name, AGENT), "max"),
                   "{{agent}} waiting in the task store ({{reason}})", "C"),
        ],
        "short", min_=0,
    ))  # fmt: skip
    g.add(8, timeseries(
        "Failures by cause",
        "Failed executions per minute by cause "
        "(validation_failure, tool_error, missing_data, timeout, error).",
        [target(per_minute(agg(sc.LABEL_CAUSE, rate(sel(FAILURES, *EXEC_M)))), "{{cause}}")],
        "opm", stack=True, min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(12, table_instant(
        "Firing alerts",
        "Agent* alerts firing now (the ALERTS series in Prometheus), with their labels. "
        "Empty when all is well.",
        FIRING,
    ))  # fmt: skip
    g.add(4, stat(
        "Exporter targets up",
        f"Scrape targets of job {sc.SCRAPE_JOB} that answered their last scrape "
        "(AgentExporterDown fires when one does not).",
        agg("", sel("up", eq("job", sc.SCRAPE_JOB))), "short",
    ))  # fmt: skip
    g.add(8, timeseries(
        "Telemetry dropped or corrected",
        "agent_exporter_dropped_total per minute by reason (label overflow, invalid scores, "
        "export failures...). 0 when the library had nothing to drop or correct.",
        [target(per_minute(agg(sc.LABEL_REASON, rate(sel(sc.EXPORTER_DROPPED.name))))
                + " or on() vector(0)", "{{reason}}")],  # on(): a 0 line only when nothing was dropped
        "opm", min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(24, timeseries(
        "Traces kept and dropped by sampling",
        "Executions per minute whose trace was kept (failed, timeout, step_failed, slow, sampled..., "
        "keep_all while sample_healthy is 1) or dropped (healthy, head_sampler). "
        "Metrics and logs are never sampled.",
        [target(per_minute(agg(f"{sc.LABEL_DECISION}, {sc.LABEL_REASON}",
                               rate(sel(sc.SAMPLING_DECISIONS.name)))), "{{decision}} {{reason}}")],
        "opm", stack=True, min_=0,
    ))  # fmt: skip
    return dashboard(
        UIDS["overview"],
        "Are the agents completing their tasks, fast enough and well enough, right now?",
        g.panels,
        [AGENT_VAR, TRIGGER_VAR],
    )


def trends() -> dict[str, Any]:
    win = "$" + AGGREGATION_VAR

    def inc(selector: str, by: str) -> str:
        return agg(by, rate(selector, win, "increase"))

    g = Grid()
    g.row(9)
    g.add(24, timeseries(
        "Completion rate over the trailing $aggregation",
        "Per agent: completed / (completed + failed) over the trailing day, week or 30 days "
        "(the Aggregation variable) at each point. Dashed: the completion_ratio objective.",
        [
            target(completion_ratio(sc.LABEL_AGENT, win, "increase"), "{{agent}}"),
            objective_target(sc.OBJECTIVE_COMPLETION_RATIO),
        ],
        "percentunit", min_=0, max_=1, interval=TRENDS_STEP,
    ))  # fmt: skip
    g.row(9)
    g.add(12, timeseries(
        "Executions per trailing $aggregation by status",
        "Executions that ended in the trailing window, by terminal status: the volume behind the rate.",
        [target(inc(sel(FINISHED, *EXEC_M), sc.LABEL_STATUS), "{{status}}")],
        "short", stack=True, min_=0, interval=TRENDS_STEP,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Executions started per trailing $aggregation by trigger",
        "Executions that began running in the trailing window, by trigger source.",
        [target(inc(sel(STARTED, *EXEC_M), sc.LABEL_TRIGGER), "{{trigger}}")],
        "short", stack=True, min_=0, interval=TRENDS_STEP,
    ))  # fmt: skip
    g.row(9)
    g.add(12, timeseries(
        "Completion rate over the trailing $aggregation by trigger",
        "completed / (completed + failed) in the trailing window, per trigger source.",
        [target(completion_ratio(sc.LABEL_TRIGGER, win, "increase"), "{{trigger}}")],
        "percentunit", min_=0, max_=1, interval=TRENDS_STEP,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Failures per trailing $aggregation by cause",
        "Failed executions in the trailing window, by cause.",
        [target(inc(sel(FAILURES, *EXEC_M), sc.LABEL_CAUSE), "{{cause}}")],
        "short", stack=True, min_=0, interval=TRENDS_STEP,
    ))  # fmt: skip
    return dashboard(
        UIDS["trends"],
        "Is the completion rate getting better or worse, day by day, week by week, month by month?",
        g.panels,
        [AGENT_VAR, TRIGGER_VAR, aggregation_var()],
        time_from="now-30d",
    )


def oldest_pending_age() -> str:
    """Seconds the oldest pending execution has waited; 0 (not absent) when nothing waits.

    The oldest over every instance is the smallest timestamp (`min`, as AgentTasksStuckPending
    uses). "Nothing waits" reads 0, or +Inf in multiprocess mode (livemin): both are filtered out
    of the age and shown as 0 by the `count * 0` fallback (max * 0 would make +Inf a NaN).
    """
    oldest = sel(sc.EXECUTION_PENDING_OLDEST.name, AGENT)
    waiting = f"{oldest} > 0 < +Inf"
    return f"time() - {agg(AGENT_REASON, waiting, 'min')} or {agg(AGENT_REASON, oldest, 'count')} * 0"


def store_oldest_wait_age() -> str:
    """Seconds the oldest execution waiting in the task store has waited (absent without a store).

    Every process with the store exports the same value (read from the store), so `max` across
    instances; 0 means nothing waits and is filtered out.
    """
    return f"time() - {agg(AGENT_REASON, sel(sc.TASKS_WAITING_OLDEST.name, AGENT) + ' > 0', 'max')}"


def runtime() -> dict[str, Any]:
    step = sc.LABEL_STEP
    step_time = sel(STEP_DURATION + "_sum", AGENT)
    g = Grid()
    g.row(8)
    g.add(12, timeseries(
        "Execution runtime p95 vs objective",
        "Per agent: 95th percentile of runtime (pending excluded); dashed: max_runtime_seconds. "
        "Exemplar points carry the trace_id: click one to open that execution's trace in Jaeger.",
        [
            target(quantile(0.95, EXEC_DURATION, EXEC_M, sc.LABEL_AGENT), "{{agent}} p95",
                   exemplar=True),
            objective_target(sc.OBJECTIVE_MAX_RUNTIME_SECONDS),
        ],
        "s", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Execution runtime p95 by trigger",
        "95th percentile of runtime per trigger source, with exemplars linking to Jaeger.",
        [target(quantile(0.95, EXEC_DURATION, EXEC_M, sc.LABEL_TRIGGER), "{{trigger}}",
                exemplar=True)],
        "s", min_=0,
    ))  # fmt: skip
    g.row(9)
    g.add(12, ranking(
        "Slowest steps (p95 by step)",
        "Steps ranked by 95th percentile runtime, averaged over the selected time range.",
        quantile(0.95, STEP_DURATION, (AGENT,), step), "{{step}}", "s", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Step runtime p95 over time",
        "95th percentile runtime per step. Exemplar points open the trace of a slow step in Jaeger.",
        [target(quantile(0.95, STEP_DURATION, (AGENT,), step), "{{step}}", exemplar=True)],
        "s", min_=0,
    ))  # fmt: skip
    g.row(9)
    g.add(12, heatmap(
        "Step duration heatmap",
        "How step runtimes are distributed over time (every step of the selected agents): a "
        "cell counts the steps that ended in that duration bucket. Exemplars link to Jaeger.",
        agg("le", rate(sel(STEP_DURATION + "_bucket", AGENT), fn="increase")), "s",
    ))  # fmt: skip
    g.add(12, ranking(
        "Bottleneck ranking (share of total step time)",
        "Each step's share of all the time spent in steps, averaged over the selected range: "
        "where the agents' time goes.",
        f"{agg(step, rate(step_time))} / ignoring({step}) group_left() ({agg('', rate(step_time))} > 0)",
        "{{step}}", "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Pending time p95 by reason vs objective",
        "95th percentile of the time executions waited before running, per agent and reason "
        "(queued, approval). Dashed: max_pending_seconds. Exemplars link to Jaeger.",
        [
            target(quantile(0.95, PENDING_DURATION, (AGENT,), AGENT_REASON), "{{agent}} {{reason}}",
                   exemplar=True),
            objective_target(sc.OBJECTIVE_MAX_PENDING_SECONDS),
        ],
        "s", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Oldest pending execution age vs objective",
        "How long the oldest still-pending execution has waited, per agent and reason (0 when "
        "none): in the processes now, and (with a task store) in the store, which includes "
        "suspended executions parked for a human. Above the dashed max_pending_seconds, "
        "AgentTasksStuckPending fires.",
        [
            target(oldest_pending_age(), "{{agent}} {{reason}}"),
            target(store_oldest_wait_age(), "{{agent}} {{reason}} (task store)", "C"),
            objective_target(sc.OBJECTIVE_MAX_PENDING_SECONDS),
        ],
        "s", min_=0,
    ))  # fmt: skip
    g.row(9)
    g.add(12, heatmap(
        "Execution runtime heatmap",
        "Distribution of execution runtimes over time; click an exemplar (a trace_id) to open "
        "the trace in Jaeger.",
        agg("le", rate(sel(EXEC_DURATION + "_bucket", *EXEC_M), fn="increase")), "s",
    ))  # fmt: skip
    g.add(12, timeseries(
        "Branch decisions by step and path",
        "Paths taken per minute at each decision point: a shift here often explains a change "
        "in runtime.",
        [target(per_minute(agg(f"{step}, {sc.LABEL_PATH}",
                               rate(sel(sc.BRANCH_DECISIONS.name, AGENT)))), "{{step}} → {{path}}")],
        "opm", stack=True, min_=0,
    ))  # fmt: skip
    return dashboard(
        UIDS["runtime"],
        "Where does the time go: which steps are slow, which are the bottleneck, how long do tasks wait?",
        g.panels,
        [AGENT_VAR, TRIGGER_VAR],
    )


def evaluations() -> dict[str, Any]:
    step = sc.LABEL_STEP
    evals, steps_total = sc.EVALUATIONS.name, sc.STEPS.name
    passed = eq(sc.LABEL_RESULT, sc.EvaluationResult.PASS)
    review = eq(sc.LABEL_STATUS, sc.StepStatus.NEEDS_REVIEW)
    g = Grid()
    g.row(8)
    g.add(12, timeseries(
        "Mean evaluation score by step",
        "Mean of every evaluation score (0-1) recorded on each step. Dashed: min_evaluation_score.",
        [
            target(mean(STEP_SCORE, (AGENT,), step), "{{step}}"),
            objective_target(sc.OBJECTIVE_MIN_EVALUATION_SCORE),
        ],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Execution score trend vs objective",
        "Per agent: mean evaluation score of whole executions, and the 10th percentile. Below the "
        "dashed min_evaluation_score, AgentEvaluationScoreLow fires. p10 exemplars open low scorers.",
        [
            target(mean(EXEC_SCORE, EXEC_M, sc.LABEL_AGENT), "{{agent}} mean"),
            target(quantile(0.1, EXEC_SCORE, EXEC_M, sc.LABEL_AGENT), "{{agent}} p10", "B",
                   exemplar=True),
            objective_target(sc.OBJECTIVE_MIN_EVALUATION_SCORE),
        ],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Evaluations by step: pass / fail",
        "Evaluations per minute on each step, split by result.",
        [target(per_minute(agg(f"{step}, {sc.LABEL_RESULT}", rate(sel(evals, AGENT)))),
                "{{step}} {{result}}")],
        "opm", bars=True, stack=True, min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Evaluation pass rate by step",
        "pass / (pass + fail) per step.",
        [target(ratio(sel(evals, AGENT, passed), sel(evals, AGENT), step), "{{step}}")],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(9)
    g.add(12, ranking(
        "Lowest-scoring steps",
        "Steps ranked by mean evaluation score over the selected range, lowest first.",
        mean(STEP_SCORE, (AGENT,), step), "{{step}}", "percentunit", desc=False, min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Needs-review steps by step",
        "Steps per minute that completed but were flagged for human review (status needs_review).",
        [target(per_minute(agg(step, rate(sel(steps_total, AGENT, review)))), "{{step}}")],
        "opm", bars=True, stack=True, min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(6, stat(
        "Needs-review share",
        "Share of ended steps flagged needs_review over the selected agents, now (0 when none).",
        ratio(sel(steps_total, AGENT, review), sel(steps_total, AGENT), ""), "percentunit",
        min_=0, max_=1, steps=thresholds(("green", None), ("orange", 0.05), ("red", 0.2)),
    ))  # fmt: skip
    g.add(6, stat(
        "Needs-review steps per hour",
        "Steps flagged needs_review per hour over the selected agents, now.",
        agg("", rate(sel(steps_total, AGENT, review))) + " * 3600", "short",
    ))  # fmt: skip
    g.add(12, heatmap(
        "Step score distribution",
        "How evaluation scores are distributed over time (buckets are fine from 0.5 to 1.0). "
        "Exemplars open the trace of an evaluated step.",
        agg("le", rate(sel(STEP_SCORE + "_bucket", AGENT), fn="increase")), "percentunit",
    ))  # fmt: skip
    g.row(9)
    g.add(24, criteria_table(
        "Pass rate by criterion (failing first)",
        "pass / (pass + fail) of each evaluation criterion (step.evaluate()'s name) over the selected "
        "range, per agent, lowest first: the criteria failing most are at the top. The one at the top is "
        "the criterion AgentEvaluationScoreLow names.",
        criterion_pass_rate(),
    ))  # fmt: skip
    return dashboard(
        UIDS["evaluations"],
        "How good is the agents' work: which steps score low, fail evaluation or need a human review?",
        g.panels,
        [AGENT_VAR, TRIGGER_VAR],
    )


def tools() -> dict[str, Any]:
    calls, tool = sc.TOOL_CALLS.name, sc.LABEL_TOOL
    tool_m = (AGENT, TOOL)
    success = eq(sc.LABEL_OUTCOME, sc.ToolOutcome.SUCCESS)
    bad = re_(sc.LABEL_OUTCOME, sc.ToolOutcome.ERROR, sc.ToolOutcome.TIMEOUT)
    g = Grid()
    g.row(8)
    g.add(12, timeseries(
        "Tool success rate",
        "success / all calls per tool or integration (errors and timeouts are unsuccessful).",
        [target(ratio(sel(calls, *tool_m, success), sel(calls, *tool_m), tool), "{{tool}}")],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Tool error ratio vs objective",
        "(error + timeout) / all calls per agent and tool. Above the dashed "
        "max_tool_error_ratio, AgentToolErrorRateHigh fires.",
        [
            target(ratio(sel(calls, *tool_m, bad), sel(calls, *tool_m), f"{sc.LABEL_AGENT}, {tool}"),
                   "{{agent}} {{tool}}"),
            objective_target(sc.OBJECTIVE_MAX_TOOL_ERROR_RATIO),
        ],
        "percentunit", min_=0, max_=1,
    ))  # fmt: skip
    g.row(8)
    g.add(12, timeseries(
        "Tool response time (p50 / p95)",
        "Median and 95th percentile response time per tool. Exemplars open a slow call's trace.",
        [
            target(quantile(0.5, TOOL_DURATION, tool_m, tool), "{{tool}} p50"),
            target(quantile(0.95, TOOL_DURATION, tool_m, tool), "{{tool}} p95", "B", exemplar=True),
        ],
        "s", min_=0,
    ))  # fmt: skip
    g.add(12, timeseries(
        "Tool calls by outcome",
        "Tool and integration calls per minute (the API calls executions made), by outcome.",
        [target(per_minute(agg(f"{tool}, {sc.LABEL_OUTCOME}", rate(sel(calls, *tool_m)))),
                "{{tool}} {{outcome}}")],
        "opm", stack=True, min_=0,
    ))  # fmt: skip
    g.row(9)
    g.add(8, piechart(
        "Error share by tool",
        "Which tools the failed calls (error + timeout) came from, averaged over the range.",
        agg(tool, rate(sel(calls, *tool_m, bad))), "{{tool}}", "short",
    ))  # fmt: skip
    g.add(16, timeseries(
        "Tokens by step",
        "Tokens per minute used by each step, input and output stacked.",
        [target(per_minute(agg(f"{sc.LABEL_STEP}, {sc.LABEL_TYPE}", rate(sel(sc.TOKENS.name, AGENT)))),
                "{{step}} {{type}}")],
        "short", stack=True, min_=0,
    ))  # fmt: skip
    g.row(8)
    g.add(12, ranking(
        "Slowest tools (p95)",
        "Tools ranked by 95th percentile response time, averaged over the selected range.",
        quantile(0.95, TOOL_DURATION, tool_m, tool), "{{tool}}", "s", min_=0,
    ))  # fmt: skip
    g.add(12, ranking(
        "Token-heaviest steps",
        "Steps ranked by tokens per minute (input + output), averaged over the selected range.",
        per_minute(agg(sc.LABEL_STEP, rate(sel(sc.TOKENS.name, AGENT)))), "{{step}}", "short", min_=0,
    ))  # fmt: skip
    return dashboard(
        UIDS["tools"],
        "Are the tools and integrations the agents call reliable and fast, and where do the tokens go?",
        g.panels,
        [AGENT_VAR, TOOL_VAR],
    )


def criterion_pass_rate(window: str = "$__range") -> str:
    """pass / (pass + fail) per agent and criterion over `window`, sorted ascending (failing first)."""
    evals = sc.EVALUATIONS.name
    passed = eq(sc.LABEL_RESULT, sc.EvaluationResult.PASS)
    by = f"{sc.LABEL_AGENT}, {sc.LABEL_EVALUATION}"
    return f"sort({ratio(sel(evals, AGENT, passed), sel(evals, AGENT), by, window, 'increase')})"


def criteria_table(title: str, description: str, expr: str) -> dict[str, Any]:
    """An instant table, one row per (agent, criterion), sorted by its value ascending."""
    panel = table_instant(title, description, expr)
    panel["fieldConfig"]["defaults"].update(unit="percentunit", min=0, max=1)
    panel["fieldConfig"]["defaults"]["custom"]["cellOptions"] = {"mode": "basic", "type": "gauge"}
    panel["fieldConfig"]["defaults"]["thresholds"] = thresholds(("red", None), ("orange", 0.8), ("green", 0.95))
    panel["options"]["sortBy"] = [{"desc": False, "displayName": "Pass rate"}]
    panel["transformations"] = [
        {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {"Value": "Pass rate"}}},
        {"id": "sortBy", "options": {"fields": {}, "sort": [{"desc": False, "field": "Pass rate"}]}},
    ]
    return panel


BUILDERS = {
    "agent-overview": overview,
    "agent-completion-trends": trends,
    "agent-runtime": runtime,
    "agent-evaluations": evaluations,
    "agent-tools": tools,
    "agent-tasks": tasks,
    "agent-versions": versions,
    "agent-cost": cost,
}
# The dashboards on Prometheus; the others (agent-tasks) query the task store in SQL.
PROMETHEUS_DASHBOARDS = ("agent-overview", "agent-completion-trends", "agent-runtime", "agent-evaluations",
                         "agent-tools", "agent-versions", "agent-cost")  # fmt: skip


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard, keyed by uid."""
    return {uid: builder() for uid, builder in BUILDERS.items()}


def path_for(uid: str) -> Path:
    """The committed file of a dashboard: `dashboards/<uid>.json`."""
    return DASHBOARD_DIR / f"{uid}.json"


def render(dash: Mapping[str, Any]) -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- queries for live tests


def iter_all_queries(**kwargs: Any) -> Iterator[PanelQuery]:
    """`iter_queries` over every Prometheus dashboard."""
    for uid, dash in build_all().items():
        if uid in PROMETHEUS_DASHBOARDS:
            yield from iter_queries(dash, **kwargs)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is stale")
    args = parser.parse_args(argv)
    stale = []
    for uid, dash in build_all().items():
        path, text = path_for(uid), render(dash)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(("stale: " if args.check else "wrote: ") + ", ".join(stale))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
