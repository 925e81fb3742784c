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
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
