"""The task store (issue 14): what the agent's thread pays with it on, and what one writer sustains.

    python3 -m benchmarks.tasks --section full     # the section `python3 -m benchmarks` runs (9)
    python3 -m benchmarks.tasks --scale            # the figures of docs/tasks.md (Scale) (1M rows, EXPLAIN)

*Cost*: one configuration with the store on; the store is switched off and on between interleaved
samples by detaching the recorder's task sink (`recorder.tasks = None` is exactly what
`configure()` without `task_store=` leaves), so both variants share one process, one registry and
one tracer. The figure is the CPU time of the agent's own thread (`time.thread_time`): the
store's writer thread is not in it, by design (it is what the issue promises to keep off the
agent). *Sustained*: executions offered at stepped rates (then unpaced) into a fresh store, then
flushed; rows counted in the database, drops from the sink, and the writer's lag (the flush after
the load stops). PostgreSQL runs on a real server started in a temporary directory
(tests/postgres.py) when its binaries and psycopg are installed; otherwise its rows say why not.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .shape import AGENT, EVALUATION, SCORE, STEPS, TOKENS_IN, TOKENS_OUT, TRIGGER

ROOT = Path(__file__).resolve().parent.parent
# Events the store receives per execution of this shape: started, running, finished, and per step
# started, tool call, evaluation, tokens, finished (counted once by a sink that only counts).
EVENTS = 34
DESCRIPTION = "Invoice INV-2031 for March from billing@acme.example: extract, validate, reply"


# ============================================================================ the execution


def run_one(task_id: str) -> None:
    """The 6-step shape of the other sections, with a description (what the task list shows)."""
    import exporter

    with exporter.execution(AGENT, TRIGGER, task_id, DESCRIPTION) as run:
        for name, tool in STEPS:
            with run.step(name, tool=tool) as step:
                with step.tool_call(tool):
                    pass
                step.evaluate(EVALUATION, score=SCORE)
                step.record_usage(input_tokens=TOKENS_IN, output_tokens=TOKENS_OUT)


def _null_span_exporter() -> Any:
    """A span exporter that accepts and forgets: spans are made and batched, nothing is sent."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Null(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    return Null()


def configure(url: str, tracing: bool) -> Any:
    import exporter
    from exporter.testing import fresh_registry

    exporter.reset()
    kw: dict[str, Any] = {"span_exporter": _null_span_exporter()} if tracing else {"tracing": False}
    return exporter.configure(
        service_name="bench-tasks", metrics_port=None, registry=fresh_registry(), log_level="off",
        task_store=url, **kw,
    )  # fmt: skip


def dropped_metric(state: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in state.metrics.registry.collect():
        if fam.name == "agent_exporter_dropped":
            for s in fam.samples:
                if s.name.endswith("_total") and s.labels.get("reason", "").startswith("task_store"):
                    out[s.labels["reason"]] = out.get(s.labels["reason"], 0.0) + s.value
    return out


# ============================================================================ stores


@dataclass
class Store:
    """A fresh, empty task store: its URL, and how to count and size its rows from outside."""

    kind: str  # "SQLite" / "PostgreSQL"
    url: str
    path: str | None = None  # SQLite file

    def rows(self) -> int:
        return int(self.scalar("SELECT count(*) FROM agent_tasks"))

    def scalar(self, sql: str) -> Any:
        if self.path is not None:
            conn = sqlite3.connect(self.path)
            try:
                return conn.execute(sql).fetchone()[0]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as pg:
            row = pg.execute(sql).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None

    def bytes(self) -> int:
        """SQLite: the file with its WAL, after a checkpoint; PostgreSQL: the table with its indexes and TOAST."""
        if self.path is not None:
            conn = sqlite3.connect(self.path)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        return int(self.scalar("SELECT pg_total_relation_size('agent_tasks')"))


class Stores:
    """Fresh stores on demand: SQLite files in a temporary directory, databases on one PostgreSQL server."""

    def __init__(self, postgres: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
        self.pg: Any = None
        self.pg_missing = ""
        self._n = itertools.count(1)
        if postgres:
            self._start_postgres()

    def _start_postgres(self) -> None:
        try:
            import psycopg  # noqa: F401

            sys.path.insert(0, str(ROOT))
            from tests.postgres import PostgresServer
        except ImportError as exc:
            self.pg_missing = f"not run: {exc}"
            return
        try:
            self.pg = PostgresServer().start()
        except BaseException as exc:  # noqa: BLE001 - pytest's skip() is a BaseException: binaries absent
            self.pg_missing = f"not run: PostgreSQL server unavailable ({type(exc).__name__}: {exc})"[:200]

    def sqlite(self) -> Store:
        path = str(self.dir / f"tasks{next(self._n)}.db")
        return Store("SQLite", f"sqlite:///{path}", path)

    def postgresql(self) -> Store | None:
        if self.pg is None:
            return None
        return Store("PostgreSQL", self.pg.create_database())

    def each(self) -> Iterator[tuple[str, Store | None]]:
        yield "SQLite", self.sqlite()
        yield "PostgreSQL", self.postgresql()

    def close(self) -> None:
        import shutil

        if self.pg is not None:
            self.pg.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ============================================================================ 1. agent-thread cost


def cost(store: Store, tracing: bool, rounds: int, batch: int, warmup: int) -> dict[str, Any]:
    """Median agent-thread CPU µs per execution, store off and on, interleaved; what was delivered."""
    import exporter

    state = configure(store.url, tracing)
    sink = state.tasks
    ids = itertools.count()
    samples: dict[str, list[float]] = {"off": [], "on": []}
    ratios: list[float] = []
    ran = {"off": 0, "on": 0}
    for r in range(warmup + rounds):
        order = ["off", "on"] if r % 2 == 0 else ["on", "off"]
        pair: dict[str, float] = {}
        for variant in order:
            state.recorder.tasks = sink if variant == "on" else None
            c0 = time.thread_time()
            for _ in range(batch):
                run_one(f"{variant}-{next(ids)}")
            dt = time.thread_time() - c0
            ran[variant] += batch
            pair[variant] = dt
            if r >= warmup:
                samples[variant].append(dt / batch * 1e6)
            # the writer catches up between samples, so neither variant pays for the other's backlog
            exporter.flush(30.0)
        if r >= warmup:
            ratios.append(pair["on"] / pair["off"])  # adjacent samples: the machine's load drifts less
    state.recorder.tasks = sink
    t0 = time.perf_counter()
    flushed = exporter.flush(60.0)
    lag = time.perf_counter() - t0
    out = {
        "off": statistics.median(samples["off"]),
        "on": statistics.median(samples["on"]),
        "ratio": statistics.median(ratios),
        "ran_on": ran["on"],
        "ran_off": ran["off"],
        "rows": store.rows(),
        "written": sink.written,
        "dropped": sink.dropped,
        "dropped_metric": sum(dropped_metric(state).values()),
        "flushed": flushed,
        "lag": lag,
    }
    exporter.reset()
    return out


# ============================================================================ 2. sustained rate


def sustained(
    store: Store, rate: float | None, seconds: float, tracing: bool = False, max_batch: int | None = None
) -> dict[str, Any]:
    """Executions offered at `rate`/s (None: as fast as the process goes) for `seconds`, then flushed.

    `max_batch`: an experiment, not a setting — the writer's per-cycle event bound
    (`exporter.tasks.sink.MAX_BATCH`) replaced for this run, to show what the writer does without it.
    """
    import exporter
    import exporter.tasks.sink as sink_module

    saved = sink_module.MAX_BATCH
    if max_batch is not None:
        sink_module.MAX_BATCH = max_batch
    try:
        return _sustained(store, rate, seconds, tracing) | {"max_batch": sink_module.MAX_BATCH}
    finally:
        sink_module.MAX_BATCH = saved
        exporter.reset()


def _sustained(store: Store, rate: float | None, seconds: float, tracing: bool) -> dict[str, Any]:
    import exporter

    state = configure(store.url, tracing)
    sink = state.tasks
    for i in range(50):  # connection, schema, first-call costs
        run_one(f"warm-{i}")
    exporter.flush(30.0)
    base_rows = store.rows()
    n = 0
    peak = 0
    t_start = time.perf_counter()
    end = t_start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate is not None:
            due = t_start + n / rate
            if due > now:
                time.sleep(due - now)
        run_one(f"S-{n}")
        n += 1
        if n % 64 == 0:
            peak = max(peak, len(sink._q))  # events waiting for the writer (a sample)
    elapsed = time.perf_counter() - t_start
    backlog = len(sink._q)
    t0 = time.perf_counter()
    flushed = exporter.flush(120.0)
    lag = time.perf_counter() - t0
    # held: nothing lost, and no backlog building up (at most one second of events queued at the end)
    held = not sink.dropped and backlog <= (n / elapsed) * EVENTS
    out = {
        "target": rate,
        "seconds": seconds,
        "held": held and store.rows() - base_rows == n,
        "drain": backlog / lag if lag > 0 else 0.0,
        "backlog": backlog,
        "made": n,
        "rate": n / elapsed,
        "rows": store.rows() - base_rows,
        "written": sink.written,
        "dropped": sink.dropped,
        "dropped_metric": dropped_metric(state),
        "lag": lag,
        "flushed": flushed,
        "peak_queue": peak,
        "max_queue": sink.max_queue,
    }
    exporter.reset()
    return out


def ladder(
    store_of: Callable[[], Store], rates: Sequence[float], seconds: float, unpaced: float, experiment: bool
) -> list[dict[str, Any]]:
    """Stepped rates, each into a fresh store, up to the first rate not held (a loss, a backlog
    building up) or the first pace the process cannot offer; then `unpaced` seconds as fast as it
    goes (longer: a growing backlog shows), and the same with the writer's batch bound lifted."""
    out: list[dict[str, Any]] = []
    for rate in rates:
        r = sustained(store_of(), rate, seconds)
        out.append(r)
        if not r["held"] or r["rate"] < 0.95 * rate:
            break
    out.append(sustained(store_of(), None, unpaced))
    if experiment:
        out.append(sustained(store_of(), None, unpaced, max_batch=10**9))
    return out


def best_held(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in runs if r["held"] and r["max_batch"] < 10**9]
    return max(ok, key=lambda r: r["rate"]) if ok else None


# ============================================================================ 3. several processes, one SQLite file


def child(url: str, seconds: float, prefix: str) -> None:
    """One of N processes sharing a store: unpaced executions for `seconds`, flush, one JSON line."""
    import exporter

    state = configure(url, tracing=False)
    sink = state.tasks
    n = 0
    c0 = time.process_time()
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < seconds:
        run_one(f"{prefix}-{n}")
        n += 1
    elapsed = time.perf_counter() - t_start
    t0 = time.perf_counter()
    flushed = exporter.flush(120.0)
    lag = time.perf_counter() - t0
    print(json.dumps({
        "made": n, "elapsed": elapsed, "written": sink.written, "dropped": sink.dropped, "lag": lag,
        "flushed": flushed, "cpu": time.process_time() - c0,
    }), flush=True)  # fmt: skip
    exporter.reset()


def processes(store: Store, n: int, seconds: float) -> dict[str, Any]:
    """`n` processes at once into one store; totals."""
    import exporter

    configure(store.url, tracing=False)  # the schema exists before they start
    exporter.reset()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "benchmarks.tasks", "--child", store.url, "--seconds", str(seconds)]
    procs = [
        subprocess.Popen([*cmd, "--prefix", f"P{k}"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        for k in range(n)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 180)
        line = [x for x in out.splitlines() if x.startswith("{")]
        if p.returncode != 0 or not line:
            raise RuntimeError(f"task store child failed ({p.returncode})")
        results.append(json.loads(line[-1]))
    made = sum(r["made"] for r in results)
    return {
        "processes": n,
        "made": made,
        "rate": sum(r["made"] / r["elapsed"] for r in results),
        "rows": store.rows(),
        "dropped": sum(r["dropped"] for r in results),
        "lag": max(r["lag"] for r in results),
    }


# ============================================================================ the section


PROFILES = {
    # cost: rounds, batch, warmup; sustained: seconds per step, rates; processes: counts, seconds
    "full": ((60, 30, 3), (6.0, (250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0), 12.0), ((2, 4), 6.0)),
    "quick": ((20, 30, 2), (3.0, (250.0, 1000.0), 6.0), ((2,), 3.0)),
    "smoke": ((2, 10, 1), (0.5, (100.0,), 0.5), ((2,), 0.5)),
}


def _fate(r: dict[str, Any]) -> str:
    return f"{r['rows']:,} of {r['made']:,} rows, {r['dropped']:,} dropped"


def section(
    profile: str, targets: list[Any], section_cls: Any, target_cls: Any, log: Any, postgres: bool | None = None
) -> list[Any]:
    """The sections for run.py: agent-thread cost off vs on, sustained rates without drops.

    `postgres`: start a PostgreSQL server for its rows; by default not in the smoke profile, which
    starts no server (like Prometheus in section 5), so `pytest -m "not servers"` stays offline.
    """
    (rounds, batch, warmup), (seconds, rates, unpaced), (nprocs, pseconds) = PROFILES.get(profile, PROFILES["smoke"])
    log("9. task store: agent-thread cost off/on, sustained executions/s")
    stores = Stores(postgres=profile != "smoke" if postgres is None else postgres)
    if not stores.pg_missing and stores.pg is None:
        stores.pg_missing = "not run (smoke profile: no servers; `--postgres` to include it)"
    try:
        sec = section_cls(
            "9. Task store: agent-thread cost",
            "The 6-step execution (with a description) recorded in the task store "
            "(`configure(task_store=...)`), SQLite (a file in a temporary directory, WAL) and PostgreSQL "
            "15 (a local server, `fsync=off` as in the tests). *Agent thread*: CPU time of the agent's own "
            f"thread (`time.thread_time`) per execution, store off and on in interleaved samples of {batch} "
            f"executions ({rounds} each, medians; the store is detached between samples, and the writer "
            "drained after each, so neither pays the other's backlog); spans are made and batched to an "
            "exporter that discards them, or tracing is off (metrics only: the smallest base, so the "
            "largest ratio). *Delivered*: rows in the store after a flush, counted with SELECT count(*).",
            [
                "store",
                "tracing",
                "off (agent thread)",
                "on (agent thread)",
                "on / off (median of pairs)",
                "delivered (on)",
            ],
        )
        worst = 0.0
        for kind, store in stores.each():
            for tracing in (True, False):
                label = "spans made" if tracing else "off"
                if store is None:
                    sec.rows.append([kind, label, "—", "—", "—", stores.pg_missing])
                    continue
                if not tracing:
                    store = stores.sqlite() if kind == "SQLite" else stores.postgresql()
                    assert store is not None
                r = cost(store, tracing, rounds, batch, warmup)
                ratio = r["ratio"]
                if tracing:
                    worst = max(worst, ratio)
                sec.rows.append([
                    kind, label, f"{r['off']:,.1f} µs", f"{r['on']:,.1f} µs", f"{ratio:.3f}×",
                    f"{r['rows']:,} rows of {r['ran_on']:,} executions made on, {r['dropped']:,} dropped",
                ])  # fmt: skip
        sec.notes.append(
            f"Executions made while the store is off leave no row (their {r['ran_off']:,} per store are "
            "not recorded at all), so the rows in the store must equal the executions made on."
        )
        targets.append(target_cls("Task store on: agent-thread CPU per execution vs off (spans made)",
                                  "within 10%", f"worst {worst:.3f}×", worst <= 1.10))  # fmt: skip

        # sustained
        sus = section_cls(
            "10. Task store: sustained executions/s",
            f"Executions of the same shape offered at stepped rates for {seconds:g} s each, one process, "
            "tracing off so that the process offers as much as it can, each step into a fresh store, up "
            "to the first rate not held or the first pace the process cannot offer; then "
            f"{unpaced:g} s unpaced (longer, so that a growing backlog shows); then `exporter.flush()`. "
            "*Delivered*: rows counted in the store; "
            "*dropped*: events or rows the sink lost (also `agent_exporter_dropped_total{reason="
            '"task_store_full"|"task_store_unavailable"}`); *lag*: how long the flush took after the load '
            "stopped, and the events still queued then; *queue peak*: events waiting for the writer "
            "(sampled) against its bound; *held*: nothing lost and at most one second of events (34 per "
            "execution) still queued when the load stopped — a rate with a backlog building up is not held "
            "however few seconds it ran without a drop.",
            [
                "store",
                "load",
                "offered",
                "executions",
                "delivered",
                "lag after the load",
                "queue peak (events)",
                "held",
            ],
        )
        best: dict[str, str] = {}
        for kind, store in stores.each():
            if store is None:
                sus.rows.append([kind, "—", "—", "—", stores.pg_missing, "—", "—", "—"])
                best[kind] = stores.pg_missing
                continue

            def fresh(kind: str = kind) -> Store:
                s = stores.sqlite() if kind == "SQLite" else stores.postgresql()
                assert s is not None
                return s

            runs = ladder(fresh, rates, seconds, unpaced, experiment=profile != "smoke")
            for r in runs:
                load = f"unpaced, {r['seconds']:g} s" if r["target"] is None else f"paced at {r['target']:,.0f}/s"
                if r["max_batch"] >= 10**9:
                    load += ", writer's batch bound lifted (experiment)"
                drain = f", drained at {r['drain'] / EVENTS:,.0f} executions/s" if r["backlog"] > 1000 else ""
                sus.rows.append([
                    kind, load, f"{r['rate']:,.0f}/s", f"{r['made']:,}", _fate(r),
                    f"{r['lag']:.2f} s ({r['backlog']:,} events queued{drain})",
                    f"{r['peak_queue']:,} of {r['max_queue']:,}", "yes" if r["held"] else "**no**",
                ])  # fmt: skip
            b = best_held(runs)
            best[kind] = f"{b['rate']:,.0f}/s (lag {b['lag']:.2f} s)" if b else "below the first rate"
        for n in nprocs:
            r = processes(stores.sqlite(), n, pseconds)
            sus.rows.append([
                "SQLite, one file", f"{n} processes, unpaced", f"{r['rate']:,.0f}/s (sum)", f"{r['made']:,}",
                _fate(r), f"{r['lag']:.2f} s (slowest)", "—",
                "yes (nothing lost)" if not r["dropped"] and r["rows"] == r["made"] else "**no**",
            ])  # fmt: skip
        sus.notes.append(
            "Highest rate held (0 dropped, no backlog building up), one process: "
            + "; ".join(f"{k} {v}" for k, v in best.items())
            + "."
        )
        sus.notes.append(
            "The writer folds at most `MAX_BATCH` (20,000) events per cycle and starts the next cycle at "
            "once while that many are still queued (it waits `flush_interval`, 0.5 s, only when it has "
            "caught up). Offered faster than it folds for long enough, the queue fills to its bound and "
            "events are dropped (counts first; state changes enter up to twice the bound): what limits one "
            "process then is the writer's own Python work (folding each event) sharing the GIL with an "
            "agent thread that runs flat out, not the database (the drain rate in the lag column). The "
            "experiment rows fold the whole queue each cycle."
        )
        for kind, v in best.items():
            targets.append(target_cls(f"Task store: sustained executions/s into {kind}, held (0 dropped)", "reported",
                                      v, None))  # fmt: skip
        return [sec, sus]
    finally:
        stores.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.tasks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--section", choices=("full", "quick", "smoke"), help="run the section, print it")
    ap.add_argument("--postgres", action="store_true", help="with --section smoke: start PostgreSQL too")
    ap.add_argument("--scale", action="store_true", help="row sizes, EXPLAIN and purge on a large PostgreSQL table")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows for --scale")
    ap.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="P", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(a.child, a.seconds, a.prefix)
        return
    if a.scale:
        from .tasks_scale import scale

        scale(a.rows)
        return
    from .run import Section, Target, log

    targets: list[Any] = []
    for sec in section(a.section or "quick", targets, Section, Target, log, postgres=a.postgres or None):
        print(sec.markdown())
    for t in targets:
        holds = "—" if t.holds is None else ("yes" if t.holds else "**MISSED**")
        print(f"| {t.what} | {t.target} | {t.measured} | {holds} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
