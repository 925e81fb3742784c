"""Exceptions an agent raises to say why an execution failed, and the cause each maps to."""

from __future__ import annotations

from .semconv import FailureCause, ToolOutcome


class ExecutionFailure(Exception):
    """Base of the exceptions that name a failure cause; raise a subclass from agent code."""

    cause: FailureCause = FailureCause.ERROR


class ValidationFailure(ExecutionFailure):
    """The agent's output, or its input, did not pass validation."""

    cause = FailureCause.VALIDATION_FAILURE


class MissingData(ExecutionFailure):
    """Data the execution needs is not there (an empty field, a record not found)."""

    cause = FailureCause.MISSING_DATA


class ToolError(ExecutionFailure):
    """A tool or integration call failed."""

    cause = FailureCause.TOOL_ERROR


def cause_of(exc: BaseException) -> FailureCause:
    """Map an exception to a failure cause; anything unknown is `error`."""
    if isinstance(exc, ExecutionFailure):
        return exc.cause
    if isinstance(exc, TimeoutError):
        return FailureCause.TIMEOUT
    return FailureCause.ERROR


def tool_outcome_of(exc: BaseException | None) -> ToolOutcome:
    """A tool call's outcome from the exception it ended with (None = success)."""
    if exc is None:
        return ToolOutcome.SUCCESS
    if isinstance(exc, TimeoutError):
        return ToolOutcome.TIMEOUT
    return ToolOutcome.ERROR
