"""The entry point `agent-exporter rerun --run tests.rerun_agent_cli:v2` imports: like a team's
real module, it configures the library at import (which, under `rerun`, changes nothing)."""

from __future__ import annotations

import exporter
from tests.rerun_agent import v2, v2_async

exporter.configure("scripted-agent", metrics_port=9, task_store="sqlite:////nonexistent/dir/never.db")

__all__ = ["v2", "v2_async"]
