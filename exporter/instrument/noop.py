"""Do-nothing stand-ins with exactly the public methods of Execution, Step and ToolCall.

Handed out when the library is unconfigured, or when an object could not be built. They are
explicit classes (like OpenTelemetry's NonRecordingSpan), not a `__getattr__` that answers any
name: a misspelled method fails with AttributeError whether the library is configured or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from ..semconv import PendingReason


class _NoopContext:
    """`with` and `async with` that do nothing and let exceptions pass."""

    __slots__ = ()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        return False

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> Literal[False]:
        return False


class NoopToolCall(_NoopContext):
    """A tool call that records nothing."""

    __slots__ = ()
    step: NoopStep
    tool = ""
    call_id: str | None = None


class NoopLlmCall(_NoopContext):
    """A model call that records nothing."""

    __slots__ = ()
    step: NoopStep
    model = ""
    provider: str | None = None

    def record_usage(
        self,
        input_tokens: Any = 0,
        output_tokens: Any = 0,
        *,
        cache_read_tokens: Any = 0,
        cache_write_tokens: Any = 0,
        reasoning_tokens: Any = 0,
        model: Any = None,
        provider: Any = None,
    ) -> None:
        return None


class NoopStep(_NoopContext):
    """A step that records nothing."""

    __slots__ = ()
    run: NoopExecution
    name = ""
    tool: str | None = None
    index = 0
    status = ""

    def tool_call(self, tool: Any, call_id: str | None = None) -> NoopToolCall:
        return NOOP_TOOL_CALL

    def evaluate(
        self,
        name: Any,
        score: Any = None,
        passed: bool | None = None,
        explanation: Any = None,
        *,
        threshold: float | None = None,
    ) -> str | None:
        return None

    def record_usage(
        self,
        input_tokens: Any = 0,
        output_tokens: Any = 0,
        *,
        cache_read_tokens: Any = 0,
        cache_write_tokens: Any = 0,
        reasoning_tokens: Any = 0,
        model: Any = None,
        provider: Any = None,
    ) -> None:
        return None

    def llm_call(self, model: Any, provider: Any = None) -> NoopLlmCall:
        return NOOP_LLM_CALL

    def record_input(self, obj: Any) -> None:
        return None

    def record_output(self, obj: Any) -> None:
        return None

    def branch(
        self, selected: Any, not_selected: Iterable[Any] = (), condition: Any = None, reason: Any = None
    ) -> None:
        return None

    def flag_for_review(self, reason: Any = None) -> None:
        return None

    def set_status(self, status: Any) -> None:
        return None


class NoopExecution(_NoopContext):
    """An execution that records nothing."""

    __slots__ = ()
    agent = ""
    trigger = ""
    task_id = ""
    version: str | None = None
    description: Any = None
    objectives: Any = None
    max_duration: float | None = None
    steps_total: int | None = None
    status = ""
    trace_id: str | None = None
    span_id: str | None = None
    exemplar: dict[str, str] | None = None
    ref: Any = None
    ended = False
    cost: float | None = None
    rerun_of: str | None = None

    def step(self, name: Any, tool: Any = None) -> NoopStep:
        return NOOP_STEP

    def record_input(self, obj: Any) -> None:
        return None

    def record_output(self, obj: Any) -> None:
        return None

    def fail(self, cause: Any = "error", message: str | None = None) -> None:
        return None

    def cancel(self, message: str | None = None) -> None:
        return None

    def end(self, exc: BaseException | None = None) -> None:
        return None

    def start(self) -> None:
        return None

    def wait(self, reason: str = PendingReason.APPROVAL.value) -> None:
        return None

    def suspend(self, reason: str = PendingReason.APPROVAL.value) -> dict[str, Any]:
        return {}


NOOP_EXECUTION = NoopExecution()
NOOP_STEP = NoopStep()
NOOP_TOOL_CALL = NoopToolCall()
NOOP_LLM_CALL = NoopLlmCall()
NoopLlmCall.step = NOOP_STEP
NoopStep.run = NOOP_EXECUTION
NoopToolCall.step = NOOP_STEP
