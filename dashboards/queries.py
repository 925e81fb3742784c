"""Every query of a generated dashboard with its variables substituted, for the live tests.

`iter_queries()` for Prometheus panels (and `iter_annotation_queries()`), `iter_sql_queries()` and
`iter_sql_variable_queries()` for the SQL of the Tasks dashboard, expanded the way Grafana does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from dashboards.panels import (
    PROMETHEUS_UID,
)

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
