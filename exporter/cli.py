"""The `agent-exporter` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-exporter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a simulated agent workload that serves /metrics")
    from .demo import add_arguments

    add_arguments(demo)
    ingest = sub.add_parser("ingest", help="receive OTLP traces from agents in any language: metrics, then forward")
    from .ingest.cli import add_arguments as ingest_arguments

    ingest_arguments(ingest)
    tasks = sub.add_parser("tasks", help="the task list: executions recorded in a task store")
    from .tasks.cli import add_arguments as tasks_arguments

    tasks_arguments(tasks)
    from .rerun.cli import add_cases_arguments, add_rerun_arguments

    add_cases_arguments(sub.add_parser("cases", help="a case library: tasks saved with their inputs, for re-runs"))
    add_rerun_arguments(
        sub.add_parser("rerun", help="re-run saved cases against the code as it is now; compare; gate CI")
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run(args)
    if args.command == "ingest":
        from .ingest.cli import run as run_ingest

        return run_ingest(args)
    if args.command == "tasks":
        from .tasks.cli import run as run_tasks

        return run_tasks(args)
    if args.command == "cases":
        from .rerun.cli import run_cases

        return run_cases(args)
    if args.command == "rerun":
        from .rerun.cli import run_rerun

        return run_rerun(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
