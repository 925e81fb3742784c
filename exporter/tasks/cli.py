"""`agent-exporter tasks`: the task list from the store, as a table or JSON.

It only reads: a store that is not there (a SQLite file that does not exist, a database without
the task table) is an error naming it, exit 1, and nothing is created. Exit 2: a bad option or URL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .backend import Backend, StoreError, StoreMissing, redact_url
from .query import Filters, columns_for_table, list_tasks, parse_since, show_task, steps_text, trace_text

STATUSES = ("in_progress", "pending", "completed", "failed", "cancelled")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get("AGENT_EXPORTER_TASK_STORE"),
        help="the task store URL, as given to configure(task_store=...): sqlite:////abs/path/tasks.db "
        "(sqlite:///rel/path.db is relative to the current directory) or postgresql://user@host:port/db "
        "(default: $AGENT_EXPORTER_TASK_STORE). Only read: a store that is not there is an error (exit 1), "
        "never created",
    )
    p.add_argument("--agent", help="only this agent")
    p.add_argument("--status", choices=STATUSES, help="only this status (pending: waiting, e.g. for approval)")
    p.add_argument("--trigger", help="only this trigger (email, webhook, manual, timer, ...)")
    p.add_argument("--since", help="started since: a duration (30m, 6h, 7d) or an ISO date/time (UTC)")
    p.add_argument("--search", help="text in the task id or the description (case-insensitive)")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows, newest first (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON array of rows")
    p.add_argument(
        "--show",
        metavar="TASK_ID",
        help="print one task whole: its status, step k of n, runtime, tokens, cost, trace; its input and "
        "output; its steps in order (with --json: one JSON object)",
    )
    p.add_argument(
        "--cancel",
        metavar="TASK_ID",
        help="close an execution left waiting (its carrier lost): it becomes cancelled in the store "
        "(counted in this command's process only: prefer exporter.cancel_task() in the agent)",
    )


def run(args: argparse.Namespace) -> int:
    if not args.store:
        print("agent-exporter tasks: --store URL (or AGENT_EXPORTER_TASK_STORE) is required", file=sys.stderr)
        return 2
    if args.cancel:
        try:
            _exists(args.store)
        except Exception as exc:  # noqa: BLE001 - said as the listing says it
            return _failed(args.store, exc)
        return _cancel(args.store, args.cancel)
    if args.show:
        return _show(args.store, args.show, args.json)
    try:
        filters = Filters(
            agent=args.agent,
            status=args.status,
            trigger=args.trigger,
            since=parse_since(args.since) if args.since else None,
            search=args.search,
            limit=args.limit,
        )
        backend = Backend(args.store, create=False)
        try:
            rows = list_tasks(backend, filters)
        finally:
            backend.close()
    except Exception as exc:  # noqa: BLE001
        return _failed(args.store, exc)
    try:
        if args.json:
            json.dump(rows, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            _table(rows)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has seen enough
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - interpreter exit must not flush into the closed pipe
    return 0


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no executions match")
        return
    cols = columns_for_table(rows)
    widths = [max(len(h), *(len(c) for c in cells)) for h, cells in cols]
    print("  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True)).rstrip())
    for i in range(len(rows)):
        print("  ".join(cells[i].ljust(w) for (_, cells), w in zip(cols, widths, strict=True)).rstrip())


def _show(store: str, task_id: str, as_json: bool) -> int:
    try:
        backend = Backend(store, create=False)
        try:
            task = show_task(backend, task_id)
        finally:
            backend.close()
    except Exception as exc:  # noqa: BLE001
        return _failed(store, exc)
    if task is None:
        print(f"agent-exporter tasks: no task {task_id!r} in {redact_url(store)}", file=sys.stderr)
        return 1
    if as_json:
        json.dump(task, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_task(task))
    return 0


def render_task(t: dict[str, Any]) -> str:
    """One task as text: a header, its input, its output, its steps in order."""
    out: list[str] = []
    status = t["status"] + (f" ({t['cause']})" if t["cause"] else "")
    head = [
        ("task", t["task_id"]),
        ("agent", t["agent"] + (f" version {t['version']}" if t["version"] else "")),
        ("trigger", t["trigger"] + (f" (re-run of {t['rerun_of']})" if t.get("rerun_of") else "")),
        ("status", status),
        ("steps", steps_text(t) or str(t["steps_done"])),
        ("started", t["started_at"] or ""),
    ]
    if t["runtime_seconds"] is not None:
        head.append(("runtime", f"{t['runtime_seconds']:.3f} s"))
    elif t.get("running_seconds") is not None:
        head.append(("runtime", f"{t['running_seconds']:.1f} s (running)"))
    head.append(("tokens", f"{t['input_tokens']} in, {t['output_tokens']} out"))
    if t.get("cost") is not None:
        head.append(("cost", f"{t['cost']:.6g}"))
    if t["score"] is not None:
        head.append(("score", f"{t['score']:.2f}"))
    head.append(("trace", trace_text(t)))
    if t["description"]:
        head.append(("description", t["description"]))
    if t["error"]:
        head.append(("error", t["error"]))
    width = max(len(k) for k, _ in head)
    out += [f"{k.ljust(width)}  {v}" for k, v in head]
    for key in ("input", "output"):
        text = t.get(key)
        out += ["", f"{key.upper()}:", _indent(text) if text is not None else "  (not captured)"]
    out += ["", f"STEPS ({len(t['steps'])} stored):" if t["steps"] else "STEPS: (none stored)"]
    for s in t["steps"]:
        line = f"  {s['step_index']}. {s['name']}  {s['status']}"
        if s["runtime_seconds"] is not None:
            line += f"  {s['runtime_seconds']:.3f} s"
        if s["score"] is not None:
            line += f"  score {s['score']:.2f}"
        out.append(line)
        for e in s["evaluations"]:
            score = "" if e["score"] is None else f" {e['score']:.2f}"
            out.append(f"       criterion {e['name']}: {e['result'] or '-'}{score}")
        for c in s["tool_calls"]:
            out.append(f"       tool {c['tool']}: {c['outcome']}")
        if s["branch"]:
            out.append(f"       branch taken: {s['branch']}")
    return "\n".join(out) + "\n"


def _indent(text: str) -> str:
    try:  # captured content is JSON when it was not a string: print it readably
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    return "\n".join("  " + line for line in text.splitlines() or [""])


def _failed(store: str, exc: Exception) -> int:
    """Say why the store could not be read: 1 when it is not there or the driver failed, 2 for a bad URL."""
    if isinstance(exc, StoreMissing):
        print(f"agent-exporter tasks: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, StoreError | ValueError):
        print(f"agent-exporter tasks: {exc}", file=sys.stderr)
        return 2
    # a driver error: say which store, not a traceback
    print(f"agent-exporter tasks: cannot read {redact_url(store)}: {exc}", file=sys.stderr)
    return 1


def _exists(store: str) -> None:
    """Raise StoreMissing unless the store is there (the library would create it)."""
    backend = Backend(store, create=False)
    try:
        backend.connect()
    finally:
        backend.close()


def _cancel(store: str, task_id: str) -> int:
    import exporter

    try:
        exporter.configure("agent-exporter-tasks", metrics_port=None, tracing=False, task_store=store, log_level="off")
    except ValueError as exc:
        print(f"agent-exporter tasks: {exc}", file=sys.stderr)
        return 2
    try:
        closed = exporter.cancel_task(task_id)
        written = exporter.flush(10.0)
    finally:
        exporter.shutdown()
    if not closed:
        print(f"agent-exporter tasks: {task_id} is not waiting in {redact_url(store)}", file=sys.stderr)
        return 1
    print(f"cancelled {task_id}" + ("" if written else " (the store did not confirm the write)"))
    return 0 if written else 1
