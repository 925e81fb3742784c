"""The task table, its indexes and migrations, in the two dialects (SQLite, PostgreSQL).

One row per execution, keyed by task id. Times are unix seconds (float) in both dialects so one
writer serves both; dashboards turn them into timestamps (`to_timestamp`). The schema is
versioned in `agent_exporter_schema`: the library creates and migrates it, under a lock (SQLite's
write lock, a PostgreSQL advisory lock) so several processes starting together agree.
"""

from __future__ import annotations

from typing import Final, Literal

Dialect = Literal["sqlite", "postgresql"]

TABLE: Final = "agent_tasks"
VERSION_TABLE: Final = "agent_exporter_schema"
SCHEMA_VERSION: Final = 4
# A constant key for pg_advisory_xact_lock: "agentexp" as an int.
ADVISORY_LOCK: Final = 0x6167656E74657870 & 0x7FFFFFFFFFFFFFFF

# Column -> (SQLite type, PostgreSQL type). Order is the insert order.
COLUMNS: Final[dict[str, tuple[str, str]]] = {
    "task_id": ("TEXT PRIMARY KEY", "TEXT PRIMARY KEY"),
    "agent": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "trigger": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "version": ("TEXT", "TEXT"),
    "description": ("TEXT", "TEXT"),
    # in_progress, pending (waiting), completed, failed, cancelled
    "status": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "cause": ("TEXT", "TEXT"),
    "error": ("TEXT", "TEXT"),
    "started_at": ("REAL", "DOUBLE PRECISION"),  # the first event seen of this execution
    "state_at": ("REAL NOT NULL", "DOUBLE PRECISION NOT NULL"),  # time of the state the row shows
    "ended_at": ("REAL", "DOUBLE PRECISION"),
    "runtime_seconds": ("REAL", "DOUBLE PRECISION"),  # active time, pending excluded (when ended)
    "waiting_reason": ("TEXT", "TEXT"),  # queued / approval, while pending
    "waiting_since": ("REAL", "DOUBLE PRECISION"),
    "steps_done": ("INTEGER NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
    "current_step": ("TEXT", "TEXT"),  # the step last started
    "score": ("REAL", "DOUBLE PRECISION"),  # mean evaluation score of the whole execution, when ended
    "score_sum": ("REAL NOT NULL DEFAULT 0", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    "score_n": ("INTEGER NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
    "input_tokens": ("INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    "output_tokens": ("INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    "trace_id": ("TEXT", "TEXT"),
    "span_id": ("TEXT", "TEXT"),
    # 1/true: the trace was exported; 0/false: sampling (or the head sampler) dropped it;
    # NULL: not decided yet (running) or no trace. Only kept traces are linked.
    "trace_kept": ("INTEGER", "BOOLEAN"),
    # Added in version 2: the number of steps the execution declared (`execution(steps=n)`), if it did.
    "steps_total": ("INTEGER", "INTEGER"),
    # Added in version 3 (re-runs): the captured input and output (`run.record_input()` /
    # `record_output()`: masked, redacted, truncated), and the case a re-run re-ran (its task id).
    "input": ("TEXT", "TEXT"),
    "output": ("TEXT", "TEXT"),
    "rerun_of": ("TEXT", "TEXT"),
    # Added in version 4 (issue 24): USD of the execution's priced model usage, summed over its
    # parts; NULL when unknown (prices off, or only models without a price): never a silent 0.
    "cost_usd": ("REAL", "DOUBLE PRECISION"),
    # The cache parts of input_tokens, and the tokens of models with no known price (not in cost_usd).
    "cache_read_tokens": ("INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    "cache_write_tokens": ("INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    "unpriced_tokens": ("INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
}
# Columns later migrations add: the table version 1 creates leaves them out.
LATER_COLUMNS: Final = (
    "steps_total", "input", "output", "rerun_of",  # versions 2 and 3
    "cost_usd", "cache_read_tokens", "cache_write_tokens", "unpriced_tokens",  # version 4
)
# Version 4's columns, added by ALTER TABLE (their types as in COLUMNS).
COST_COLUMNS: Final = ("cost_usd", "cache_read_tokens", "cache_write_tokens", "unpriced_tokens")

# Each execution's steps, in order, bounded per execution (version 3): written when a step ends.
STEPS_TABLE: Final = "agent_task_steps"
MAX_STEPS_KEPT: Final = 200  # steps stored per execution; the rest are counted in steps_done only
STEP_COLUMNS: Final[dict[str, tuple[str, str]]] = {
    "task_id": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "step_index": ("INTEGER NOT NULL", "INTEGER NOT NULL"),  # 1..n, the order steps were entered
    "name": ("TEXT NOT NULL", "TEXT NOT NULL"),
    "status": ("TEXT NOT NULL", "TEXT NOT NULL"),  # passed, failed, needs_review
    "runtime_seconds": ("REAL", "DOUBLE PRECISION"),
    "ended_at": ("REAL", "DOUBLE PRECISION"),
    "score": ("REAL", "DOUBLE PRECISION"),  # mean of the step's evaluation scores
    # JSON arrays: [{"name", "result", "score"}], [{"tool", "outcome", "seconds"}]
    "evaluations": ("TEXT", "TEXT"),
    "tool_calls": ("TEXT", "TEXT"),
    "branch": ("TEXT", "TEXT"),  # the path taken at the step's decision, if it made one
}

# The dashboard's and the CLI's queries, and the waiting gauges, use these.
INDEXES: Final = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_started ON {TABLE} (started_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_agent_started ON {TABLE} (agent, started_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_status_started ON {TABLE} (status, started_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_waiting ON {TABLE} (agent, waiting_reason, waiting_since)"
    " WHERE status = 'pending'",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_running ON {TABLE} (agent, started_at) WHERE status = 'in_progress'",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ended ON {TABLE} (ended_at) WHERE ended_at IS NOT NULL",
)


# Counts each process adds to, whatever order they write in.
ADDED: Final = (
    "steps_done", "score_sum", "score_n", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "unpriced_tokens",
)  # fmt: skip
# The state: taken together, from the change with the newest `state_at` (in upsert, and within a
# batch by `fold.Delta.state`, which clears the ones a state does not name).
STATE: Final = (
    "status", "cause", "error", "ended_at", "runtime_seconds", "waiting_reason", "waiting_since",
    "score", "trace_kept",
)  # fmt: skip


def create_table(dialect: Dialect) -> str:
    i = 0 if dialect == "sqlite" else 1
    cols = ",\n  ".join(f"{name} {types[i]}" for name, types in COLUMNS.items() if name not in LATER_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {cols}\n)"


# version -> the statements that bring the schema from version-1 to it.
def migrations(dialect: Dialect) -> dict[int, list[str]]:
    i = 0 if dialect == "sqlite" else 1
    return {
        1: [create_table(dialect), *INDEXES],
        2: [f"ALTER TABLE {TABLE} ADD COLUMN steps_total INTEGER"],
        3: [
            *(f"ALTER TABLE {TABLE} ADD COLUMN {c} TEXT" for c in ("input", "output", "rerun_of")),
            create_steps_table(dialect),
        ],
        4: [f"ALTER TABLE {TABLE} ADD COLUMN {c} {COLUMNS[c][i]}" for c in COST_COLUMNS],
    }


def create_steps_table(dialect: Dialect) -> str:
    i = 0 if dialect == "sqlite" else 1
    cols = ",\n  ".join(f"{name} {types[i]}" for name, types in STEP_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS {STEPS_TABLE} (\n  {cols},\n  PRIMARY KEY (task_id, step_index)\n)"


def insert_step(dialect: Dialect) -> str:
    """A step is written once, when it ends; a repeated write (a retried batch) changes nothing."""
    ph = ", ".join(placeholder(dialect, c) for c in STEP_COLUMNS)
    return (
        f"INSERT INTO {STEPS_TABLE} ({', '.join(STEP_COLUMNS)}) VALUES ({ph})\n"
        "ON CONFLICT (task_id, step_index) DO NOTHING"
    )


def placeholder(dialect: Dialect, name: str) -> str:
    return f":{name}" if dialect == "sqlite" else f"%({name})s"


def upsert(dialect: Dialect) -> str:
    """One statement per execution's batched change.

    - counts (steps, tokens, scores) add up whatever order processes write in; so does the cost,
      which stays NULL until some process says it is known (priced usage, or a priced end);
    - the state (status, waiting, end, cause, trace decision) is the newest one by event time:
      a process that suspended and one that resumed may write in either order;
    - `started_at` is the earliest event seen; agent, trigger, version, description and trace
      ids (and the steps declared) keep the first value written unless it was empty.
    """
    ph = {c: placeholder(dialect, c) for c in COLUMNS}
    least = "min" if dialect == "sqlite" else "LEAST"
    t = TABLE
    newer = f"excluded.state_at >= {t}.state_at"
    sets = [
        f"version = COALESCE({t}.version, excluded.version)",
        f"description = COALESCE({t}.description, excluded.description)",
        f"trace_id = COALESCE(excluded.trace_id, {t}.trace_id)",
        f"span_id = COALESCE({t}.span_id, excluded.span_id)",
        f"started_at = {least}(COALESCE({t}.started_at, excluded.started_at), "
        f"COALESCE(excluded.started_at, {t}.started_at))",
        *(f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE {t}.{c} END" for c in STATE),
        f"state_at = CASE WHEN {newer} THEN excluded.state_at ELSE {t}.state_at END",
        f"current_step = COALESCE(excluded.current_step, {t}.current_step)",
        f"steps_total = COALESCE({t}.steps_total, excluded.steps_total)",
        f"input = COALESCE(excluded.input, {t}.input)",  # the last recorded wins
        f"output = COALESCE(excluded.output, {t}.output)",
        f"rerun_of = COALESCE({t}.rerun_of, excluded.rerun_of)",
        *(f"{c} = {t}.{c} + excluded.{c}" for c in ADDED),
        f"cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN {t}.cost_usd"
        f" ELSE COALESCE({t}.cost_usd, 0) + excluded.cost_usd END",
    ]
    return (
        f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES ({', '.join(ph.values())})\n"
        f"ON CONFLICT (task_id) DO UPDATE SET\n  " + ",\n  ".join(sets)
    )
