"""What executions, steps and tool calls share: states, context variables, span helpers,
and the one boundary where the library's own failures are counted instead of raised."""

from __future__ import annotations

import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import _config
from .. import semconv as sc
from ..content import capture, clean_text
from ..semconv import DropReason, FailureCause, PendingReason, StepStatus

if TYPE_CHECKING:
    from .execution import Execution
    from .steps import Step

current_execution_var: ContextVar[Execution | None] = ContextVar("agent_exporter_execution", default=None)
current_step_var: ContextVar[Step | None] = ContextVar("agent_exporter_step", default=None)
propagator = TraceContextTextMapPropagator()

PASSED, FAILED, NEEDS_REVIEW = StepStatus.PASSED.value, StepStatus.FAILED.value, StepStatus.NEEDS_REVIEW.value
COMPLETED, EXEC_FAILED, CANCELLED = "completed", "failed", "cancelled"
STATUS_RANK = {PASSED: 0, NEEDS_REVIEW: 1, FAILED: 2}
CAUSES = frozenset(c.value for c in FailureCause)
REASONS = frozenset(r.value for r in PendingReason)
KNOWN_TRIGGERS = frozenset(t.value for t in sc.Trigger) | {sc.TRIGGER_RERUN}


def internal_error(state: _config.State | None, where: str, exc: BaseException) -> None:
    """A bug in the library: count it and carry on; the agent must not notice."""
    if state is not None:
        state.drop(DropReason.INTERNAL_ERROR, f"internal error in {where}: {type(exc).__name__}: {exc}")


def clean_reason(state: _config.State, reason: Any) -> str:
    """A pending reason from the closed set; anything else is counted and recorded as queued."""
    if isinstance(reason, str) and reason in REASONS:
        return reason
    state.drop(
        DropReason.UNKNOWN_REASON, f"pending reason {reason!r} is not one of {sorted(REASONS)}; recorded as 'queued'"
    )
    return PendingReason.QUEUED.value


def exc_text(exc: BaseException) -> str:
    """`Type: message` of an exception for a span status or a log: masked, bounded, never raising."""
    return clean_text(f"{type(exc).__name__}: {clean_text(exc, 1000)}", 1000)


def record_exception(span: Any, exc: BaseException) -> None:
    """The span's `exception` event, like `Span.record_exception` but with the message masked.

    The SDK's own version calls `str(exc)` (which user exceptions may make raise) and puts the
    message and the traceback on the span as they are, secrets included.
    """
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001
        stack = ""
    span.add_event(
        "exception",
        {
            "exception.type": type(exc).__qualname__,
            "exception.message": clean_text(exc, 1000),
            "exception.stacktrace": clean_text(stack, 8192),
            "exception.escaped": "False",
        },
    )


def restore_context(var: ContextVar[Any] | None, cv_token: Any, otel_token: Any) -> None:
    """Undo what enter attached. A token made in another context (an exit in another thread or
    task) cannot be reset there; that is the caller's business, not an error to raise."""
    if var is not None and cv_token is not None:
        try:
            var.reset(cv_token)
        except Exception:  # noqa: BLE001
            pass
    if otel_token is not None:
        try:
            otel_context.detach(otel_token)
        except Exception:  # noqa: BLE001
            pass


def hex_ids(span: trace.Span) -> tuple[str | None, str | None]:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def captured(state: _config.State, key: str, obj: Any) -> str | None:
    """`obj` as captured content (masked, redacted, truncated), what was changed counted; None
    when capture is off. The same treatment as a step's input and output."""
    st = state
    if not st.settings.capture_content:
        return None
    text, report = capture(obj, max_bytes=st.settings.max_content_bytes, redact=st.settings.redact)
    if report.unserialisable:
        st.drop(
            DropReason.CONTENT_UNSERIALISABLE,
            f"{key}: {report.unserialisable} value(s) not JSON-serialisable; kept as repr()",
        )
    if report.redact_error:
        st.drop(DropReason.REDACT_ERROR, f"{key}: redaction hook failed ({report.notes[-1]}); content withheld")
    if report.truncated_bytes:
        st.drop(
            DropReason.CONTENT_TRUNCATED,
            f"{key}: truncated by {report.truncated_bytes} bytes to {st.settings.max_content_bytes}",
        )
    return text
