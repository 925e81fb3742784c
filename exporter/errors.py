"""Exceptions an agent raises to say why an execution failed, and the cause each maps to."""

from __future__ import annotations

from .semconv import FailureCause, LlmOutcome, ToolOutcome


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


_RATE_LIMIT_WORDS = ("ratelimit", "rate limit", "rate_limit", "too many requests", "429", "resource_exhausted")


def llm_outcome_of(exc: BaseException | None) -> LlmOutcome:
    """A model call's outcome from the exception it ended with (None = success).

    `rate_limited` when the exception's type name, its status code (`status_code` / `status` /
    `code`, as the OpenAI, Anthropic and Google clients carry it) or its message says 429 or rate
    limit; `timeout` for a TimeoutError or a type named so; else `error`.
    """
    if exc is None:
        return LlmOutcome.SUCCESS
    for attr in ("status_code", "status", "code", "http_status"):
        try:
            if getattr(exc, attr, None) == 429:
                return LlmOutcome.RATE_LIMITED
        except Exception:  # noqa: BLE001 - a hostile property must not break the classification
            pass
    name = type(exc).__name__.lower()
    try:
        text = f"{name} {str(exc)[:300].lower()}"
    except Exception:  # noqa: BLE001 - __str__ of user exceptions may raise
        text = name
    if any(w in text for w in _RATE_LIMIT_WORDS):
        return LlmOutcome.RATE_LIMITED
    if isinstance(exc, TimeoutError) or "timeout" in name or "timedout" in name:
        return LlmOutcome.TIMEOUT
    return LlmOutcome.ERROR
