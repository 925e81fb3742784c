"""The versions dashboard (`agent-versions`): two versions of an agent side by side.

Built with the rest by `dashboards/build.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboards.panels import (
    AGENT,
    AGENT_VAR,
    COMPLETED,
    DECIDED,
    DS,
    RATE,
    UIDS,
    Grid,
    agg,
    dashboard,
    mean,
    quantile,
    query_var,
    rate,
    ratio,
    re_,
    sel,
    table_instant,
    target,
    timeseries,
)
from exporter import semconv as sc

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
