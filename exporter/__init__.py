"""agent-exporter: traces, metrics and logs for AI-agent task executions.

import exporter
exporter.configure(service_name="invoice-agent", metrics_port=9464)
with exporter.execution("invoice", trigger="email", task_id="T-1") as run:
    with run.step("Extract", tool="custom_gpt") as step:
        step.evaluate("accuracy", score=0.97)
"""

from __future__ import annotations

from ._config import (
    Objectives,
    __version__,
    configure,
    flush,
    metrics_app,
    registry,
    reset,
    shutdown,
)
from .api import (
    cancel_task,
    current_execution,
    current_step,
    execution,
    resume_execution,
    start_execution,
    step,
)
from .errors import ExecutionFailure, MissingData, ToolError, ValidationFailure
from .instrument.execution import Execution
from .instrument.steps import Step, ToolCall
from .pipeline.logs import add_trace_context
from .rerun import rerun
from .semconv import ExecutionStatus, FailureCause, PendingReason, StepStatus, Trigger
from .spans.bridge import task
from .traces.sampling import SamplingSpanProcessor

__all__ = [
    "Execution",
    "ExecutionFailure",
    "ExecutionStatus",
    "FailureCause",
    "MissingData",
    "Objectives",
    "PendingReason",
    "SamplingSpanProcessor",
    "Step",
    "StepStatus",
    "ToolCall",
    "ToolError",
    "Trigger",
    "ValidationFailure",
    "__version__",
    "add_trace_context",
    "cancel_task",
    "configure",
    "current_execution",
    "current_step",
    "execution",
    "flush",
    "metrics_app",
    "registry",
    "reset",
    "rerun",
    "resume_execution",
    "shutdown",
    "start_execution",
    "step",
    "task",
]
