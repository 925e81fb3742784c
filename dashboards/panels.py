"""The pieces every dashboard is built from: constants, PromQL helpers, panels, variables, links, layout.

Standard library only, besides `exporter.semconv`; the dashboards themselves are built in `dashboards/build.py`.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

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
    "cost": "agent-cost",
}
TITLES = {
    "agent-overview": "Agent overview",
    "agent-completion-trends": "Agent completion trends",
    "agent-runtime": "Agent runtime analysis",
    "agent-evaluations": "Agent evaluation insights",
    "agent-tools": "Agent tool performance",
    "agent-tasks": "Agent tasks",
    "agent-versions": "Agent versions",
    "agent-cost": "Agent cost and models",
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


def base_panel(
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
    return base_panel(
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
    return base_panel("stat", title, description, [target(expr, "")], unit, options, steps=steps, min_=min_, max_=max_)


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
    return base_panel(
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
    return base_panel(
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
    return base_panel("piechart", title, description, [target(expr, legend)], unit, options, custom)


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
    return base_panel(
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


# --------------------------------------------------------------------------- layout

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
