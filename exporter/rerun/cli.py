"""`agent-exporter cases save` and `agent-exporter rerun`: a case library from the task store, and
a before/after gate over it. Exit 0: fine; 1: a --fail-on rule tripped (or a task was refused);
2: a usage error; 130: interrupted (the report so far is written)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from ..tasks.backend import Backend
from ..tasks.cli import STATUSES
from ..tasks.cli import _failed as store_failed
from ..tasks.query import Filters, parse_since


def add_cases_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cases_command", required=True)
    save = sub.add_parser("save", help="save tasks from the store as cases (one JSON object per line)")
    save.add_argument(
        "--store", default=os.environ.get("AGENT_EXPORTER_TASK_STORE"), help="the task store URL (only read)"
    )
    save.add_argument("--task-id", action="append", default=[], metavar="ID", help="this task (repeatable)")
    save.add_argument("--agent", help="the agent's tasks (re-runs left out)")
    save.add_argument("--status", choices=STATUSES, help="only this status (with --agent)")
    save.add_argument("--since", help="started since: 30m, 6h, 7d or an ISO date/time (with --agent)")
    save.add_argument("--limit", type=int, default=20, help="at most this many, newest first (default 20)")
    save.add_argument("--out", required=True, help="the case file: appended to, ids never repeated")


def run_cases(args: argparse.Namespace) -> int:
    if not args.store:
        print("agent-exporter cases save: --store URL (or AGENT_EXPORTER_TASK_STORE) is required", file=sys.stderr)
        return 2
    if bool(args.task_id) == bool(args.agent):
        print("agent-exporter cases save: give --task-id ID (repeatable) or --agent A, not both", file=sys.stderr)
        return 2
    from .cases import CaseError, append, select

    try:
        filters = Filters(
            agent=args.agent,
            status=args.status,
            since=parse_since(args.since) if args.since else None,
            limit=args.limit,
        )
        backend = Backend(args.store, create=False)
        try:
            cases, refused = select(backend, args.task_id, filters)
        finally:
            backend.close()
    except Exception as exc:  # noqa: BLE001
        return store_failed(args.store, exc)
    for why in refused:
        print(f"agent-exporter cases save: refused {why}", file=sys.stderr)
    try:
        added, already = append(args.out, cases)
    except (OSError, CaseError) as exc:
        print(f"agent-exporter cases save: {exc}", file=sys.stderr)
        return 1
    print(f"saved {added} case(s) to {args.out}" + (f" ({already} already there)" if already else ""))
    return 1 if refused else 0


def add_rerun_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cases", help="the case file (agent-exporter cases save)")
    p.add_argument("--run", required=True, metavar="MODULE:FUNCTION", help="the entry point, called with each input")
    p.add_argument("--version", dest="agent_version", help="the version the re-runs are recorded with")
    p.add_argument("--store", help="record the re-runs in this task store (trigger rerun)")
    p.add_argument("--concurrency", type=int, default=1, help="cases run at once (default 1)")
    p.add_argument("--timeout", type=float, help="seconds a case may run before it fails (cause timeout)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write the JSON report here")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML here (a regression is a failure)")
    p.add_argument(
        "--fail-on",
        metavar="RULES",
        help="exit 1 when one trips: new_failures>0, completion<0.9, score_drop>0.05, cost_increase>20%% "
        "(comma-separated)",
    )


def run_rerun(args: argparse.Namespace) -> int:
    from .. import _config
    from .cases import CaseError, load
    from .report import parse_rules
    from .runner import load_entry_point, rerun

    def usage(msg: str) -> int:
        print(f"agent-exporter rerun: {msg}", file=sys.stderr)
        return 2

    try:
        rules = parse_rules(args.fail_on)
        cases = load(args.cases)
    except (ValueError, OSError) as exc:
        return usage(str(exc))
    if args.concurrency < 1:
        return usage("--concurrency must be >= 1")
    if args.timeout is not None and not args.timeout > 0:
        return usage("--timeout must be > 0")
    try:  # the library first: the entry point's own module-level configure() then changes nothing
        _config.configure("agent-exporter-rerun", metrics_port=None, task_store=args.store, log_level="warning")
    except ValueError as exc:
        return usage(str(exc))
    warnings.filterwarnings("ignore", message=r"agent_exporter\.configure\(\) called again")
    try:
        fn = load_entry_point(args.run)
    except (ValueError, CaseError) as exc:
        _config.shutdown()
        return usage(str(exc))

    def progress(done: int, total: int, case: Mapping[str, Any]) -> None:
        print(f"[{done}/{total}] {case['id']}: {case['verdict']}", file=sys.stderr, flush=True)

    print(f"re-running {len(cases)} case(s) with {args.run}", file=sys.stderr, flush=True)
    try:
        report = rerun(
            cases, fn, version=args.agent_version, concurrency=args.concurrency, timeout=args.timeout,
            progress=progress,
        )  # fmt: skip
    finally:
        _config.flush(10.0)
        _config.shutdown()
    checked = report.check(args.fail_on)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(checked), f, indent=1)
            f.write("\n")
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(report.junit())
    sys.stdout.write(report.table())
    for r in checked:
        value = "not measurable" if r["value"] is None else f"{r['value']:.4g}"
        print(f"rule {r['rule']}: {value} -> {'TRIPPED' if r['tripped'] else 'ok'}")
    if report.interrupted:
        print("interrupted: the report holds the cases that ended", file=sys.stderr)
        return 130
    return 1 if any(r["tripped"] for r in checked) and rules else 0
