"""Generate the Grafana dashboards in this directory from the library's constants.

Run `python -m dashboards.build` to rewrite the committed JSON, `python -m dashboards.build --check`
to fail when it is stale. Standard library only. Targets Grafana 11.6 (dashboard schemaVersion 41).

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
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from exporter import semconv as sc

SCHEMA_VERSION = 41  # Grafana 11.6 (grafana-foundation-sdk 11.6 variant defaults to 41)
GRID_COLUMNS = 24
DASHBOARD_DIR = Path(__file__).resolve().parent
TAG = "agent-exporter"

# Datasource uids the provisioning files define (grafana/provisioning/datasources/datasources.yml).
PROMETHEUS_UID = "prometheus"
JAEGER_UID = "jaeger"
ALERTMANAGER_UID = "alertmanager"
DS = {"type": "prometheus", "uid": "${datasource}"}

RATE = "$__rate_interval"
AGGREGATION_VAR = "aggregation"
AGGREGATION_OPTIONS = (("Daily", "1d"), ("Weekly", "7d"), ("Monthly", "30d"))
# Trends use trailing windows sampled every hour at least, not calendar buckets: a step of 1d/7d/30d
# would be aligned by Grafana to step boundaries, so a fresh install would show "No data" for the
# first day (or week, or month).
TRENDS_STEP = "1h"
# Metric names a query may use besides the library's own.
EXTRA_METRICS = frozenset({"ALERTS", "up"})

UIDS = {
    "overview": "agent-overview",
    "trends": "agent-completion-trends",
    "runtime": "agent-runtime",
    "evaluations": "agent-evaluations",
    "tools": "agent-tools",
    "tasks": "agent-tasks",
    "versions": "agent-versions",
}
TITLES = {
    "agent-overview": "Agent overview",
    "agent-completion-trends": "Agent completion trends",
    "agent-runtime": "Agent runtime analysis",
    "agent-evaluations": "Agent evaluation insights",
    "agent-tools": "Agent tool performance",
    "agent-tasks": "Agent tasks",
    "agent-versions": "Agent versions",
}

# --------------------------------------------------------------------------- PromQL helpers

AGENT = f'{sc.LABEL_AGENT}=~"$agent"'
TRIGGER = f'{sc.LABEL_TRIGGER}=~"$trigger"'
TOOL = f'{sc.LABEL_TOOL}=~"$tool"'


def sel(name: str, *matchers: str) -> str:
    """A selector: `name{m1,m2}`."""
    return name + "{" + ",".join(matchers) + "}" if matchers else name


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def re_(label: str, *values: str) -> str:
    return f'{label}=~"{"|".join(values)}"'


def agg(by: str, inner: str, op: str = "sum") -> str:
    return f"{op} by ({by}) ({inner})" if by else f"{op}({inner})"


def rate(selector: str, window: str = RATE, fn: str = "rate") -> str:
    return f"{fn}({selector}[{window}])"


def ratio(num: str, den: str, by: str, window: str = RATE, fn: str = "rate") -> str:
    """num/den of two counter selectors; 0 (not absent) when num has no series; gaps when den is 0."""
    n = agg(by, rate(num, window, fn))
    d = agg(by, rate(den, window, fn))
    return f"({n} or 0 * {d}) / ({d} > 0)"


def mean(hist: str, matchers: tuple[str, ...], by: str, window: str = RATE, fn: str = "rate") -> str:
    """Mean of a histogram: rate of _sum over rate of _count."""
    s = agg(by, rate(sel(hist + "_sum", *matchers), window, fn))
    c = agg(by, rate(sel(hist + "_count", *matchers), window, fn))
    return f"{s} / ({c} > 0)"


def quantile(q: float, hist: str, matchers: tuple[str, ...], by: str, window: str = RATE, fn: str = "rate") -> str:
    by_le = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {agg(by_le, rate(sel(hist + '_bucket', *matchers), window, fn))})"


def objective(name: str, by: str = sc.LABEL_AGENT) -> str:
    return agg(by, sel(sc.OBJECTIVE.name, eq(sc.LABEL_OBJECTIVE, name), AGENT), op="max")


FINISHED = sc.EXECUTIONS_FINISHED.name
STARTED = sc.EXECUTIONS_STARTED.name
FAILURES = sc.EXECUTION_FAILURES.name
EXEC_DURATION = sc.EXECUTION_DURATION.name
EXEC_SCORE = sc.EXECUTION_EVALUATION_SCORE.name
STEP_DURATION = sc.STEP_DURATION.name
STEP_SCORE = sc.STEP_EVALUATION_SCORE.name
PENDING_DURATION = sc.EXECUTION_PENDING_DURATION.name
TOOL_DURATION = sc.TOOL_CALL_DURATION.name
COMPLETED = eq(sc.LABEL_STATUS, sc.ExecutionStatus.COMPLETED)
DECIDED = re_(sc.LABEL_STATUS, sc.ExecutionStatus.COMPLETED, sc.ExecutionStatus.FAILED)


def completion_ratio(by: str, window: str = RATE, fn: str = "rate", trigger: bool = True) -> str:
    """completed / (completed + failed); cancelled counts on neither side."""
    base = (AGENT, TRIGGER) if trigger else (AGENT,)
    return ratio(sel(FINISHED, *base, COMPLETED), sel(FINISHED, *base, DECIDED), by, window, fn)


# --------------------------------------------------------------------------- panel helpers


def target(
    expr: str,
    legend: str = "__auto",
    ref: str = "A",
    *,
    exemplar: bool = False,
    instant: bool = False,
    fmt: str = "time_series",
) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "exemplar": exemplar,
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


GREEN = thresholds(("green", None))
OBJECTIVE_OVERRIDE = {
    "matcher": {"id": "byFrameRefID", "options": "O"},
    "properties": [
        {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
        {"id": "custom.fillOpacity", "value": 0},
        {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
    ],
}


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    options: dict[str, Any],
    custom: dict[str, Any] | None = None,
    *,
    min_: float | None = None,
    max_: float | None = None,
    overrides: list[dict[str, Any]] | None = None,
    interval: str | None = None,
    transformations: list[dict[str, Any]] | None = None,
    steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic"},
        "thresholds": steps or GREEN,
        "unit": unit,
    }
    if custom is not None:
        defaults["custom"] = custom
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    panel: dict[str, Any] = {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if interval:
        panel["interval"] = interval
    if transformations:
        panel["transformations"] = transformations
    return panel


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    *,
    bars: bool = False,
    stack: bool = False,
    min_: float | None = None,
    max_: float | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    custom = {
        "axisBorderShow": False,
        "axisPlacement": "auto",
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
    }
    has_objective = any(t["refId"] == "O" for t in targets)
    options = {
        "legend": {
            "calcs": ["mean", "lastNotNull"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        options,
        custom,
        min_=min_,
        max_=max_,
        overrides=[OBJECTIVE_OVERRIDE] if has_objective else None,
        interval=interval,
    )


def stat(
    title: str,
    description: str,
    expr: str,
    unit: str,
    *,
    steps: dict[str, Any] | None = None,
    min_: float | None = None,
    max_: float | None = None,
) -> dict[str, Any]:
    options = {
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": "auto",
        "wideLayout": True,
    }
    return _panel("stat", title, description, [target(expr, "")], unit, options, steps=steps, min_=min_, max_=max_)


def ranking(
    title: str,
    description: str,
    expr: str,
    legend: str,
    unit: str,
    *,
    desc: bool = True,
    min_: float | None = None,
    max_: float | None = None,
) -> dict[str, Any]:
    """A table: one row per series, its mean over the selected range, sorted."""
    options = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
        "sortBy": [{"desc": desc, "displayName": "Mean"}],
    }
    custom = {"align": "auto", "cellOptions": {"mode": "basic", "type": "gauge"}, "inspect": False}
    transformations = [{"id": "reduce", "options": {"mode": "seriesToRows", "reducers": ["mean"]}}]
    return _panel(
        "table",
        title,
        description,
        [target(expr, legend)],
        unit,
        options,
        custom,
        min_=min_,
        max_=max_,
        transformations=transformations,
    )


def heatmap(title: str, description: str, expr: str, y_unit: str) -> dict[str, Any]:
    options = {
        "calculate": False,
        "cellGap": 1,
        "cellValues": {"unit": "short"},
        "color": {
            "exponent": 0.5,
            "fill": "dark-orange",
            "mode": "scheme",
            "reverse": False,
            "scale": "exponential",
            "scheme": "Oranges",
            "steps": 64,
        },
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "filterValues": {"le": 1e-9},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "showValue": "never",
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": False},
        "yAxis": {"axisPlacement": "left", "reverse": False, "unit": y_unit},
    }
    custom = {
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "scaleDistribution": {"type": "linear"},
    }
    return _panel(
        "heatmap",
        title,
        description,
        [target(expr, "{{le}}", exemplar=True, fmt="heatmap")],
        "short",
        options,
        custom,
    )


def piechart(title: str, description: str, expr: str, legend: str, unit: str) -> dict[str, Any]:
    options = {
        "displayLabels": ["percent"],
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["percent"]},
        "pieType": "pie",
        "reduceOptions": {"calcs": ["mean"], "fields": "", "values": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"hideFrom": {"legend": False, "tooltip": False, "viz": False}}
    return _panel("piechart", title, description, [target(expr, legend)], unit, options, custom)


def table_instant(title: str, description: str, expr: str) -> dict[str, Any]:
    options = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
    }
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False}
    transformations = [
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True, "alertstate": True}},
        }
    ]
    return _panel(
        "table",
        title,
        description,
        [target(expr, "", instant=True, fmt="table")],
        "none",
        options,
        custom,
        transformations=transformations,
    )


# --------------------------------------------------------------------------- variables and links


def datasource_var(
    text: str = "Prometheus", uid: str = PROMETHEUS_UID, label: str = "Prometheus", plugin: str = "prometheus"
) -> dict[str, Any]:
    """The `datasource` variable: any data source of `plugin`, `uid` preselected."""
    return {
        "current": {"text": text, "value": uid},
        "hide": 0,
        "includeAll": False,
        "label": label,
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": plugin,
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def multi_var(
    name: str, label: str, datasource: dict[str, Any], definition: str, query: Any, *, all_value: str, refresh: int
) -> dict[str, Any]:
    """A query variable taking any number of values, All preselected."""
    return {
        "allValue": all_value,
        "current": {"text": ["All"], "value": ["$__all"]},
        "datasource": datasource,
        "definition": definition,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": query,
        "refresh": refresh,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


def query_var(name: str, label: str, metric: str, label_name: str, matchers: tuple[str, ...] = ()) -> dict[str, Any]:
    definition = f"label_values({sel(metric, *matchers)}, {label_name})"
    query = {"qryType": 1, "query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"}
    return multi_var(name, label, DS, definition, query, all_value=".*", refresh=2)


def aggregation_var() -> dict[str, Any]:
    text, value = AGGREGATION_OPTIONS[0]
    return {
        "current": {"text": text, "value": value},
        "description": "Trailing window each point sums: one day, one week or 30 days.",
        "hide": 0,
        "includeAll": False,
        "label": "Aggregation",
        "multi": False,
        "name": AGGREGATION_VAR,
        "options": [{"selected": i == 0, "text": t, "value": v} for i, (t, v) in enumerate(AGGREGATION_OPTIONS)],
        "query": ",".join(f"{t} : {v}" for t, v in AGGREGATION_OPTIONS),
        "type": "custom",
    }


AGENT_VAR = query_var("agent", "Agent", STARTED, sc.LABEL_AGENT)
TRIGGER_VAR = query_var("trigger", "Trigger", STARTED, sc.LABEL_TRIGGER, (AGENT,))
TOOL_VAR = query_var("tool", "Tool", sc.TOOL_CALLS.name, sc.LABEL_TOOL, (AGENT,))


def jaeger_explore_url() -> str:
    panes = {
        "jaeger": {
            "datasource": JAEGER_UID,
            "queries": [{"refId": "A", "datasource": {"type": "jaeger", "uid": JAEGER_UID}, "queryType": "search"}],
            "range": {"from": "now-1h", "to": "now"},
        }
    }
    return "/explore?schemaVersion=1&orgId=1&panes=" + urllib.parse.quote(json.dumps(panes, separators=(",", ":")))


def links(own_uid: str) -> list[dict[str, Any]]:
    out = [
        {
            "asDropdown": False,
            "icon": "dashboard",
            "includeVars": True,
            "keepTime": True,
            "tags": [],
            "targetBlank": False,
            "title": TITLES[uid],
            "tooltip": "",
            "type": "link",
            "url": f"/d/{uid}",
        }
        for uid in UIDS.values()
        if uid != own_uid
    ]
    out.append(
        {
            "asDropdown": False,
            "icon": "external link",
            "includeVars": False,
            "keepTime": False,
            "tags": [],
            "targetBlank": True,
            "title": "Traces in Jaeger (Explore)",
            "tooltip": "Search execution traces in the Jaeger datasource",
            "type": "link",
            "url": jaeger_explore_url(),
        }
    )
    return out


def dashboard(
    uid: str,
    description: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    time_from: str = "now-6h",
    datasource: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *(annotations or []),
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links(uid),
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [datasource or datasource_var(), *variables]},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": TITLES[uid],
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --------------------------------------------------------------------------- the dashboards

OBJ = "O"  # refId of every objective line (styled dashed red by OBJECTIVE_OVERRIDE)


class Grid:
    """Lays panels out row by row on Grafana's 24-column grid and numbers them in reading order."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._h = 0

    def row(self, height: int) -> None:
        """Start a new row of panels `height` units tall."""
        self._y += self._h
        self._x, self._h = 0, height

    def add(self, width: int, panel: dict[str, Any]) -> None:
        if self._x + width > GRID_COLUMNS:
            raise ValueError(f"{panel['title']!r} does not fit in the row at y={self._y}")
        panel["gridPos"] = {"h": self._h, "w": width, "x": self._x, "y": self._y}
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)
        self._x += width


def objective_target(name: str) -> dict[str, Any]:
    return target(objective(name), "{{agent}} objective", OBJ)


def per_minute(expr: str) -> str:
    return f"{expr} * 60"


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


# --------------------------------------------------------------------------- the Tasks dashboard (SQL)

# The task store's PostgreSQL data source (grafana/provisioning/datasources/datasources.yml) and its
# plugin id in Grafana 11.6 (`postgres` is the older alias of the same built-in plugin).
TASKS_DATASOURCE_UID = "agent-tasks"
POSTGRES_TYPE = "grafana-postgresql-datasource"
SQL_DS = {"type": POSTGRES_TYPE, "uid": "${datasource}"}
TASKS_TABLE = "agent_tasks"  # exporter.tasks.schema.TABLE (kept in step by tests/test_dashboards_tasks_live.py)
# The Jaeger UI the trace links open: the compose stack's; change the dashboard constant elsewhere.
JAEGER_URL = "http://localhost:16686"
JAEGER_VAR = "jaeger_url"
# A custom "All" value: Grafana inserts it as it is (no quoting), so `'__all' IN ($agent)` is true
# for All. The filter then costs nothing, and an empty store (no agents yet) is not a syntax error.
ALL_SQL = "'__all'"
STATUSES = tuple(s.value for s in sc.ExecutionStatus)  # pending, in_progress, completed, failed, cancelled
RUNNING = sc.ExecutionStatus.IN_PROGRESS.value
PENDING = sc.ExecutionStatus.PENDING.value
NOW = "extract(epoch FROM now())"
NOT_KEPT = "not kept (sampled out)"
WAITING_TITLE = "Waiting for a human or a worker (oldest first)"  # the alert AgentTasksStuckPending opens it
TRACE_LINK = f"${{{JAEGER_VAR}}}/trace/${{__data.fields.trace_id}}"


def sql_var_filter(column: str, var: str) -> str:
    """`column` is one of the selected values, or anything when the variable is All."""
    return f"({ALL_SQL} IN (${var}) OR {column} IN (${var}))"


SEARCH = "(${search:sqlstring} = '' OR task_id ILIKE '%' || ${search:sqlstring} || '%' OR description ILIKE '%' || ${search:sqlstring} || '%')"  # noqa: E501
FILTERS = (sql_var_filter("agent", "agent"), sql_var_filter("trigger", "trigger"), SEARCH)
IN_RANGE = "$__unixEpochFilter(started_at)"


def where(*conditions: str) -> str:
    return "WHERE " + "\n  AND ".join(conditions)


def sql_target(sql: str, ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": SQL_DS,
        "editorMode": "code",
        "format": "table",
        "rawQuery": True,
        "rawSql": sql,
        "refId": ref,
    }


def by_name(field: str, *properties: tuple[str, Any]) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": k, "value": v} for k, v in properties]}


STATUS_COLORS = {
    "completed": "green", "failed": "red", "cancelled": "orange", RUNNING: "blue", PENDING: "yellow",
}  # fmt: skip
STATUS_OVERRIDE = by_name(
    "status",
    ("mappings", [{"type": "value", "options": {s: {"color": c, "index": i} for i, (s, c) in
                                                 enumerate(STATUS_COLORS.items())}}]),
    ("custom.cellOptions", {"type": "color-text"}),
)  # fmt: skip
TRACE_OVERRIDE = by_name(
    "trace_id",
    ("links", [{"targetBlank": True, "title": "Open the trace in Jaeger", "url": TRACE_LINK}]),
)


def sql_table(title: str, description: str, sql: str, overrides: list[dict[str, Any]]) -> dict[str, Any]:
    options = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
    }
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True, "inspect": True}
    panel = _panel("table", title, description, [sql_target(sql)], "none", options, custom, overrides=overrides)
    panel["datasource"] = SQL_DS
    return panel


def sql_stat(title: str, description: str, sql: str, unit: str) -> dict[str, Any]:
    options = {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": "value_and_name",
        "wideLayout": True,
    }
    panel = _panel("stat", title, description, [sql_target(sql)], unit, options)
    panel["datasource"] = SQL_DS
    return panel


def sql_datasource_var() -> dict[str, Any]:
    return datasource_var("Agent tasks (PostgreSQL)", TASKS_DATASOURCE_UID, "Task store", POSTGRES_TYPE)


def sql_query_var(name: str, label: str, sql: str, refresh: int) -> dict[str, Any]:
    return multi_var(name, label, SQL_DS, sql, sql, all_value=ALL_SQL, refresh=refresh)


def status_var() -> dict[str, Any]:
    return {
        "allValue": ALL_SQL,
        "current": {"text": ["All"], "value": ["$__all"]},
        "description": "Filters the recent executions and the counts by status.",
        "hide": 0,
        "includeAll": True,
        "label": "Status",
        "multi": True,
        "name": "status",
        "options": [{"selected": False, "text": s, "value": s} for s in STATUSES],
        "query": ",".join(STATUSES),
        "type": "custom",
    }


def search_var() -> dict[str, Any]:
    return {
        "current": {"text": "", "value": ""},
        "description": "Text in the task id or the description (case-insensitive; % and _ are wildcards).",
        "hide": 0,
        "label": "Search",
        "name": "search",
        "options": [{"selected": True, "text": "", "value": ""}],
        "query": "",
        "type": "textbox",
    }


def jaeger_var() -> dict[str, Any]:
    return {
        "description": "Base URL of the Jaeger UI the trace links open (the compose stack's by default).",
        "hide": 2,
        "label": "Jaeger URL",
        "name": JAEGER_VAR,
        "query": JAEGER_URL,
        "skipUrlSync": False,
        "type": "constant",
    }


# Every agent in the store, read off the (agent, started_at) index one distinct value at a time
# (a loose index scan): not the whole table, however many executions it holds.
AGENTS_SQL = (
    f"WITH RECURSIVE a AS (SELECT min(agent) AS agent FROM {TASKS_TABLE} UNION ALL "
    f"SELECT (SELECT min(agent) FROM {TASKS_TABLE} WHERE agent > a.agent) FROM a WHERE a.agent IS NOT NULL) "
    "SELECT agent FROM a WHERE agent IS NOT NULL"
)
TRIGGERS_SQL = f"SELECT DISTINCT trigger FROM {TASKS_TABLE} WHERE {IN_RANGE} ORDER BY 1"
TRACE_TEXT = (
    "CASE WHEN trace_kept THEN 'kept'"
    f" WHEN status IN ('{RUNNING}', '{PENDING}') THEN 'decided at the end'"
    " WHEN trace_id IS NULL THEN 'no trace'"
    f" ELSE '{NOT_KEPT}' END AS trace"
)


def tasks() -> dict[str, Any]:
    t = TASKS_TABLE
    g = Grid()
    g.row(4)
    g.add(12, sql_stat(
        "Executions by status",
        "Executions started in the time range, by status now (agent, trigger, status and search "
        "filters applied).",
        "SELECT\n  " + ",\n  ".join(f"count(*) FILTER (WHERE status = '{s}') AS {s}" for s in STATUSES)
        + f"\nFROM {t}\n" + where(IN_RANGE, sql_var_filter("status", "status"), *FILTERS),
        "short",
    ))  # fmt: skip
    g.add(6, sql_stat(
        "Running and waiting now",
        "Executions running now and waiting now (queued, or awaiting approval: suspended ones "
        "included, whichever process suspended them), whenever they started.",
        f"SELECT count(*) FILTER (WHERE status = '{RUNNING}') AS running,\n"
        f"  count(*) FILTER (WHERE status = '{PENDING}') AS waiting\n"
        f"FROM {t}\n" + where(f"status IN ('{RUNNING}', '{PENDING}')", *FILTERS),
        "short",
    ))  # fmt: skip
    g.add(6, sql_stat(
        "Longest wait now",
        "How long the oldest waiting execution has waited (0 when none); compare with the "
        "agent's max_pending_seconds objective (AgentTasksStuckPending).",
        f"SELECT COALESCE(max({NOW} - waiting_since), 0) AS longest_wait\nFROM {t}\n"
        + where(f"status = '{PENDING}'", *FILTERS),
        "s",
    ))  # fmt: skip
    g.row(9)
    g.add(12, sql_table(
        WAITING_TITLE,
        "Every execution waiting now, oldest first: reason approval is a human's decision "
        "(suspended executions parked in the store included), queued a free worker. Not limited "
        "to the time range: an old wait is the one to look at.",
        "SELECT task_id, agent, waiting_reason AS reason, to_timestamp(waiting_since) AS waiting_since,\n"
        f"  {NOW} - waiting_since AS waiting_for, trigger, description\n"
        f"FROM {t}\n" + where(f"status = '{PENDING}'", *FILTERS) + "\nORDER BY waiting_since ASC\nLIMIT 500",
        [by_name("waiting_for", ("unit", "s"))],
    ))  # fmt: skip
    g.add(12, sql_table(
        "Running now",
        "Every execution running now, longest-running first, with the step it is in. Not limited "
        "to the time range.",
        "SELECT task_id, agent, current_step, steps_done, to_timestamp(started_at) AS started,\n"
        f"  {NOW} - started_at AS running_for, trigger, description\n"
        f"FROM {t}\n" + where(f"status = '{RUNNING}'", *FILTERS) + "\nORDER BY started_at ASC\nLIMIT 500",
        [by_name("running_for", ("unit", "s"))],
    ))  # fmt: skip
    g.row(14)
    g.add(24, sql_table(
        "Recent executions",
        "Executions started in the time range, newest first: status, failure cause, runtime "
        "(pending excluded), mean evaluation score, tokens. trace_id links to the trace in Jaeger "
        f"only where the trace was kept; '{NOT_KEPT}' rows have no link.",
        "SELECT task_id, agent, trigger, status, cause, runtime_seconds AS runtime,\n"
        "  COALESCE(score, score_sum / NULLIF(score_n, 0)) AS score, input_tokens + output_tokens AS tokens,\n"
        "  to_timestamp(started_at) AS started, steps_done AS steps, description, error,\n"
        f"  CASE WHEN trace_kept THEN trace_id END AS trace_id, {TRACE_TEXT}\n"
        f"FROM {t}\n" + where(IN_RANGE, sql_var_filter("status", "status"), *FILTERS)
        + "\nORDER BY started_at DESC\nLIMIT 1000",
        [by_name("runtime", ("unit", "s")), by_name("score", ("decimals", 2)), STATUS_OVERRIDE, TRACE_OVERRIDE],
    ))  # fmt: skip
    return dashboard(
        UIDS["tasks"],
        "Every execution in the task store: what runs now, what waits for a human, what ended and how; "
        "each kept trace one click away.",
        g.panels,
        [
            sql_query_var("agent", "Agent", AGENTS_SQL, refresh=1),
            sql_query_var("trigger", "Trigger", TRIGGERS_SQL, refresh=2),
            status_var(),
            search_var(),
            jaeger_var(),
        ],
        datasource=sql_datasource_var(),
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


# --------------------------------------------------------------------------- versions

VERSION = sc.LABEL_VERSION
VERSION_A, VERSION_B = "version_a", "version_b"
VERSIONS = f'{VERSION}=~"${VERSION_A}|${VERSION_B}"'  # the two versions compared
V_FINISHED = sc.VERSION_EXECUTIONS_FINISHED.name
V_DURATION = sc.VERSION_EXECUTION_DURATION.name
V_SCORE = sc.VERSION_EXECUTION_EVALUATION_SCORE.name
V_TOOLS = sc.VERSION_TOOL_CALLS.name
V_TOKENS = sc.VERSION_TOKENS.name


def single(var: dict[str, Any]) -> dict[str, Any]:
    """A copy of a query variable that takes exactly one value (Grafana preselects the first)."""
    out = {k: v for k, v in var.items() if k != "allValue"}
    out.update(includeAll=False, multi=False, current={})
    return out


def version_var(name: str, label: str, sort: int) -> dict[str, Any]:
    """One version to compare: a single value, listed from the versions that finished executions in
    the time range (so a version whose processes have stopped can still be chosen). Grafana
    preselects the first: A sorts ascending (1), B descending (2), so they open on two versions."""
    return {**single(query_var(name, label, V_FINISHED, VERSION, (AGENT,))), "sort": sort}


def version_queries(window: str = RATE, fn: str = "rate") -> dict[str, tuple[str, str]]:
    """The five comparisons, per version, over `window`: title -> (expr, unit)."""
    m = (AGENT, VERSIONS)
    bad = re_(sc.LABEL_OUTCOME, sc.ToolOutcome.ERROR, sc.ToolOutcome.TIMEOUT)
    p95 = quantile(0.95, V_DURATION, m, VERSION, window, fn)
    score = mean(V_SCORE, m, VERSION, window, fn)
    tokens = (f"{agg(VERSION, rate(sel(V_TOKENS, *m), window, fn))} / "
              f"({agg(VERSION, rate(sel(V_FINISHED, *m), window, fn))} > 0)")  # fmt: skip
    return {
        "Completion rate": (ratio(sel(V_FINISHED, *m, COMPLETED), sel(V_FINISHED, *m, DECIDED), VERSION, window, fn),
                            "percentunit"),
        "p95 runtime": (p95, "s"),
        "Mean evaluation score": (score, "percentunit"),
        "Tool error ratio": (ratio(sel(V_TOOLS, *m, bad), sel(V_TOOLS, *m), VERSION, window, fn), "percentunit"),
        "Tokens per execution": (tokens, "short"),
    }  # fmt: skip


def version_start_annotation() -> dict[str, Any]:
    """Marks when a version began taking traffic: its `agent_info` series exists now and did not one
    step earlier (`$__interval` is the annotation query's step), taken over every instance, so a second
    pod of a running version marks nothing while a new version, or one back after a gap, does."""
    info = sel(sc.AGENT_INFO.name, AGENT)
    by = f"{sc.LABEL_AGENT}, {VERSION}"
    expr = f"{agg(by, info, 'max')} unless {agg(by, info + ' offset $__interval', 'max')}"
    return {
        "datasource": DS,
        "enable": True,
        "expr": expr,
        "hide": False,
        "iconColor": "purple",
        "name": "Version starts taking traffic",
        "step": "1m",
        "tagKeys": by.replace(" ", ""),
        "textFormat": "first execution of version {{version}} of {{agent}} seen (agent_info appeared)",
        "titleFormat": "{{agent}} {{version}} takes traffic",
        "useValueForTime": False,
    }


def versions() -> dict[str, Any]:
    g = Grid()
    g.row(8)
    g.add(24, range_table(
        "Versions side by side over the selected range",
        "For $version_a and $version_b (one row each): completion rate (completed / (completed + failed)), "
        "p95 runtime, mean evaluation score, tool error ratio ((error + timeout) / calls) and tokens per "
        "finished execution, over the whole selected range. A version whose processes stopped stays "
        "comparable: pick a range that covers its traffic.",
        version_queries("$__range", "increase"),
    ))  # fmt: skip
    for n, (title, (expr, unit)) in enumerate(version_queries().items()):
        if n % 2 == 0:
            g.row(8)
        g.add(12 if n < 4 else 24, timeseries(
            f"{title} by version",
            f"{title} of $version_a and $version_b over time (purple marks: a version starting to take "
            "traffic).",
            [target(expr, "{{version}}")],
            unit, min_=0, max_=1 if unit == "percentunit" else None,
        ))  # fmt: skip
    return dashboard(
        UIDS["versions"],
        "Did the new version make things better or worse? Two versions of an agent side by side.",
        g.panels,
        [single(AGENT_VAR), version_var(VERSION_A, "Version A", 1), version_var(VERSION_B, "Version B", 2)],
        annotations=[version_start_annotation()],
    )


def range_table(title: str, description: str, queries: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Instant queries, one column each, merged into one row per version."""
    refs = "ABCDEFGH"
    targets = [target(expr, "", refs[i], instant=True, fmt="table") for i, (expr, _) in enumerate(queries.values())]
    panel = table_instant(title, description, "")
    panel["targets"] = targets
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True},
                "renameByName": {f"Value #{refs[i]}": name for i, name in enumerate(queries)},
            },
        },
    ]
    panel["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}
        for name, (_, unit) in queries.items()
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
}
# The dashboards on Prometheus; the others (agent-tasks) query the task store in SQL.
PROMETHEUS_DASHBOARDS = ("agent-overview", "agent-completion-trends", "agent-runtime", "agent-evaluations",
                         "agent-tools", "agent-versions")  # fmt: skip


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard, keyed by uid."""
    return {uid: builder() for uid, builder in BUILDERS.items()}


def path_for(uid: str) -> Path:
    """The committed file of a dashboard: `dashboards/<uid>.json`."""
    return DASHBOARD_DIR / f"{uid}.json"


def render(dash: Mapping[str, Any]) -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- queries for live tests


class PanelQuery(NamedTuple):
    """One panel query with its dashboard variables substituted, ready for the Prometheus HTTP API."""

    dashboard_uid: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool  # send to /api/v1/query rather than /api/v1/query_range
    step: str | None  # the panel's min interval (substituted), e.g. "1d" on the trends dashboard


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace `$name`, `${name}`, `${name:fmt}` and `[[name]]`; unknown names raise KeyError."""
    return _VAR.sub(lambda m: values[m.group(1) or m.group(2) or m.group(3)], text)


def variable_values(
    dash: Mapping[str, Any],
    overrides: Mapping[str, str] | None = None,
    *,
    rate_interval: str = "1m",
    interval: str = "1m",
    range_: str = "1h",
) -> dict[str, str]:
    """Values for every variable a query of `dash` may use: built-ins, then the dashboard's own."""
    values = {
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
        "__range_s": str(_seconds(range_)),
        "__interval_ms": str(_seconds(interval) * 1000),
    }
    for var in dash["templating"]["list"]:
        name, kind = var["name"], var["type"]
        if kind == "datasource":
            values[name] = PROMETHEUS_UID
        elif kind == "query":
            values[name] = var.get("allValue") or ".*"
        elif kind == "custom":
            values[name] = var["current"]["value"]
        else:  # pragma: no cover - no other kinds are generated
            raise ValueError(f"variable {name}: unsupported type {kind}")
    values.update(overrides or {})
    return values


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return int(duration[:-1]) * units[duration[-1]]


def iter_queries(
    dash: Mapping[str, Any],
    *,
    agent: str = ".*",
    trigger: str = ".*",
    variables: Mapping[str, str] | None = None,
    rate_interval: str = "1m",
    interval: str = "1m",
    range_: str = "1h",
) -> Iterator[PanelQuery]:
    """Every Prometheus query of every panel of `dash`, variables substituted.

    `agent` and `trigger` are regexes (Grafana sends `.*` for All, `(a|b)` for several values);
    `variables` overrides any other variable, e.g. `{"aggregation": "7d", "tool": "gmail"}`.
    """
    overrides = {"agent": agent, "trigger": trigger, **(variables or {})}
    values = variable_values(dash, overrides, rate_interval=rate_interval, interval=interval, range_=range_)
    for panel in dash["panels"]:
        step = substitute(panel["interval"], values) if panel.get("interval") else None
        for t in panel.get("targets", []):
            yield PanelQuery(
                dash["uid"],
                panel["id"],
                panel["title"],
                t["refId"],
                substitute(t["expr"], values),
                bool(t.get("instant")),
                step,
            )


def iter_annotation_queries(dash: Mapping[str, Any], **kwargs: Any) -> Iterator[PanelQuery]:
    """The Prometheus annotation queries of `dash` (panel id 0), substituted like `iter_queries`;
    `$__interval` stands for the annotation's step."""
    overrides = {"agent": kwargs.pop("agent", ".*"), **kwargs.pop("variables", {})}
    values = variable_values(dash, overrides, **kwargs)
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            yield PanelQuery(dash["uid"], 0, a["name"], "annotation", substitute(a["expr"], values), False, a["step"])


def iter_all_queries(**kwargs: Any) -> Iterator[PanelQuery]:
    """`iter_queries` over every Prometheus dashboard."""
    for uid, dash in build_all().items():
        if uid in PROMETHEUS_DASHBOARDS:
            yield from iter_queries(dash, **kwargs)


class SqlQuery(NamedTuple):
    """One SQL query of a panel or a variable, expanded as Grafana's PostgreSQL data source would."""

    dashboard_uid: str
    panel_id: int  # 0: a variable's query
    title: str  # the panel's title, or "variable NAME"
    ref_id: str
    sql: str


_SQL_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_SQL_MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")


def sql_quote(value: str) -> str:
    """A PostgreSQL string literal, as Grafana's SQL data sources quote a value."""
    return "'" + value.replace("'", "''") + "'"


def sql_value(var: Mapping[str, Any], value: str | list[str], fmt: str | None, all_values: list[str]) -> str:
    """A dashboard variable's value in a query, formatted the way Grafana 11.6 formats it for SQL.

    All with a custom allValue: that text as it is. All without one: every option. Several values
    (multi / include-All variables): each quoted, comma-joined. A single-value variable (the text
    box): its quotes doubled, not wrapped. `${name:sqlstring}`: quoted whatever the variable.
    """
    values = list(value) if isinstance(value, list) else [value]
    if values == ["$__all"]:
        if var.get("allValue"):
            return str(var["allValue"])
        values = all_values
    if fmt == "sqlstring":
        return ",".join(sql_quote(v) for v in values)
    if fmt is not None:  # pragma: no cover - no other format is generated
        raise ValueError(f"variable {var['name']}: format {fmt} not supported here")
    if var.get("multi") or var.get("includeAll"):
        return ",".join(sql_quote(v) for v in values)
    return ",".join(v.replace("'", "''") for v in values)


def expand_sql(
    sql: str,
    dash: Mapping[str, Any],
    *,
    time_from: int,
    time_to: int,
    values: Mapping[str, str | list[str]] | None = None,
    all_values: Mapping[str, list[str]] | None = None,
) -> str:
    """`sql` with the dashboard's variables, then the time macros, replaced (unknown names raise KeyError).

    `values`: a variable's selection (default: its current one, All for agent, trigger and status);
    `all_values`: what All means for a variable without a custom allValue (its options).
    """
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    chosen = dict(values or {})

    def current(var: Mapping[str, Any]) -> str | list[str]:
        if var["type"] == "datasource":
            return str(var["current"]["value"])
        if var["type"] == "constant":
            return str(var["query"])
        return var["current"]["value"]  # type: ignore[no-any-return]

    def variable(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        if name.startswith("__"):
            return m.group(0)  # a macro: the data source expands it after the variables
        var = variables[name]
        options = (all_values or {}).get(name) or [o["value"] for o in var.get("options", [])]
        return sql_value(var, chosen.get(name, current(var)), fmt, options)

    def macro(m: re.Match[str]) -> str:
        name, arg = m.group(1), m.group(2).strip()
        if name == "unixEpochFilter":
            return f"{arg} >= {time_from} AND {arg} <= {time_to}"
        if name in ("unixEpochFrom", "unixEpochTo"):
            return str(time_from if name.endswith("From") else time_to)
        raise KeyError(f"macro $__{name} not supported here")

    return _SQL_MACRO.sub(macro, _SQL_VAR.sub(variable, sql))


def iter_sql_queries(dash: Mapping[str, Any], **kwargs: Any) -> Iterator[SqlQuery]:
    """Every SQL query of every panel of `dash`, expanded (`expand_sql`'s keyword arguments)."""
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            sql = expand_sql(t["rawSql"], dash, **kwargs)
            yield SqlQuery(dash["uid"], panel["id"], panel["title"], t["refId"], sql)


def iter_sql_variable_queries(dash: Mapping[str, Any], **kwargs: Any) -> Iterator[SqlQuery]:
    """The query of every query variable of `dash`, expanded."""
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            sql = expand_sql(var["query"], dash, **kwargs)
            yield SqlQuery(dash["uid"], 0, f"variable {var['name']}", var["name"], sql)


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
