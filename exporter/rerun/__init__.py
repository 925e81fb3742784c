"""Re-run saved tasks against a new version and compare (issue 26): cases, runner, report."""

from __future__ import annotations

from .report import Report
from .runner import rerun

__all__ = ["Report", "rerun"]
