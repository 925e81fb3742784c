"""The Tasks dashboard (`agent-tasks`): SQL against the task store's PostgreSQL table.

Built with the rest by `dashboards/build.py`.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    UIDS,
    Grid,
    base_panel,
    dashboard,
    datasource_var,
    multi_var,
)
from exporter import semconv as sc

# --------------------------------------------------------------------------- the Tasks dashboard (SQL)

# The task store's PostgreSQL data source (grafana/provisioning/datasources/datasources.yml) and its
# plugin id in Grafana 11.6 (`postgres` is the older alias of the same built-in plugin).
TASKS_DATASOURCE_UID = "agent-tasks"
POSTGRES_TYPE = "grafana-postgresql-datasource"
SQL_DS = {"type": POSTGRES_TYPE, "uid": "${datasource}"}
TASKS_TABLE = "agent_tasks"  # exporter.tasks.schema.TABLE (kept in step by tests/test_dashboards_tasks_live.py)
STEPS_TABLE = "agent_task_steps"  # exporter.tasks.schema.STEPS_TABLE (the same)
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
# trace_kept NULL on an ended execution: no trace export configured, or a framework / ingested run
# whose spans its own tool exports (exporter/tasks/query.py says the same)
NOT_EXPORTED = "not exported by agent-exporter"
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
    panel = base_panel("table", title, description, [sql_target(sql)], "none", options, custom, overrides=overrides)
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
    panel = base_panel("stat", title, description, [sql_target(sql)], unit, options)
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


def task_var() -> dict[str, Any]:
    return {
        "current": {"text": "", "value": ""},
        "description": "A task id: the last two panels show that execution whole (header, input, output, "
        "steps); empty: the newest execution that ended after a step.",
        "hide": 0,
        "label": "Task",
        "name": "task",
        "options": [{"selected": True, "text": "", "value": ""}],
        "query": "",
        "type": "textbox",
    }


# The execution the last two panels show: the Task box's id, else the newest one that ended (with a step).
SELECTED = (
    "COALESCE(NULLIF(${task:sqlstring}, ''), (SELECT task_id FROM " + TASKS_TABLE
    + " WHERE status IN ('completed', 'failed') AND steps_done > 0 ORDER BY started_at DESC LIMIT 1))"
)


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
    f" WHEN NOT trace_kept THEN '{NOT_KEPT}'"
    f" ELSE '{NOT_EXPORTED}' END AS trace"
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
        "(pending excluded), mean evaluation score, tokens, cost (USD of its priced model calls, all "
        "its parts; empty when unknown: prices off, or only models without a price; a lower bound "
        "when unpriced_tokens > 0). trace_id links to the trace in Jaeger "
        f"only where the trace was kept; '{NOT_KEPT}' rows have no link.",
        "SELECT task_id, agent, trigger, status, cause, runtime_seconds AS runtime,\n"
        "  COALESCE(score, score_sum / NULLIF(score_n, 0)) AS score, input_tokens + output_tokens AS tokens,\n"
        "  cost_usd AS cost, unpriced_tokens,\n"
        "  to_timestamp(started_at) AS started, steps_done AS steps, description, error,\n"
        f"  CASE WHEN trace_kept THEN trace_id END AS trace_id, {TRACE_TEXT}\n"
        f"FROM {t}\n" + where(IN_RANGE, sql_var_filter("status", "status"), *FILTERS)
        + "\nORDER BY started_at DESC\nLIMIT 1000",
        [by_name("runtime", ("unit", "s")), by_name("score", ("decimals", 2)),
         by_name("cost", ("unit", "currencyUSD"), ("decimals", 4)), STATUS_OVERRIDE, TRACE_OVERRIDE],
    ))  # fmt: skip
    g.row(8)
    g.add(24, sql_table(
        "Selected task",
        "One execution whole (the Task box's id; empty: the newest that ended), as `agent-exporter tasks "
        "--show` prints it: status and cause, step k of n, runtime, tokens, cost, whether its trace was "
        "kept (the link is in Recent executions), the captured input and output (`run.record_input()` / "
        "`record_output()`; masked, truncated), the case a re-run re-ran.",
        "SELECT task_id, agent, trigger, version, status, cause, error,\n"
        "  CASE WHEN steps_total IS NOT NULL THEN steps_done || ' of ' || steps_total ELSE steps_done::text END"
        " AS steps,\n"
        "  runtime_seconds AS runtime, input_tokens + output_tokens AS tokens, cost_usd AS cost,\n"
        f"  {TRACE_TEXT}, input, output, rerun_of, description\n"
        f"FROM {t}\nWHERE task_id = {SELECTED}",
        [by_name("runtime", ("unit", "s")), by_name("cost", ("unit", "currencyUSD"), ("decimals", 4)),
         STATUS_OVERRIDE],
    ))  # fmt: skip
    g.row(10)
    g.add(24, sql_table(
        "Its steps",
        "The selected execution's steps in order: status, runtime, mean score, each evaluation's "
        "result, the tool calls and their outcomes, the branch taken (kept for the first 200 steps).",
        "SELECT step_index AS step, name, status, runtime_seconds AS runtime, score, evaluations, tool_calls,"
        " branch\n"
        f"FROM {STEPS_TABLE}\nWHERE task_id = {SELECTED}\nORDER BY step_index",
        [by_name("runtime", ("unit", "s")), by_name("score", ("decimals", 2))],
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
            task_var(),
            jaeger_var(),
        ],
        datasource=sql_datasource_var(),
    )
