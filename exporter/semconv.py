"""Every name the library emits: metrics, labels, span attributes, events, statuses.

The docs (`docs/telemetry.md`), the dashboards and the alert rules are tested against this
module, so a name changes here and everywhere else at once. The GenAI names follow the
OpenTelemetry GenAI semantic conventions (Development status); they are kept here rather than
imported from `opentelemetry.semconv._incubating` so that they can move without breaking us.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# --------------------------------------------------------------------------- closed value sets


class ExecutionStatus(StrEnum):
    """Life cycle of an execution; only the last three are terminal."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureCause(StrEnum):
    """Why a failed execution failed."""

    VALIDATION_FAILURE = "validation_failure"
    TOOL_ERROR = "tool_error"
    MISSING_DATA = "missing_data"
    TIMEOUT = "timeout"
    ERROR = "error"


class StepStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"


class ToolOutcome(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"


class EvaluationResult(StrEnum):
    PASS = "pass"
    FAIL = "fail"


class PendingReason(StrEnum):
    QUEUED = "queued"
    APPROVAL = "approval"


class TokenType(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Trigger(StrEnum):
    """Known triggers. Others are accepted, bounded by the cardinality guard."""

    EMAIL = "email"
    WEBHOOK = "webhook"
    MANUAL = "manual"
    TIMER = "timer"
    API = "api"


class DropReason(StrEnum):
    """Values of `agent_exporter_dropped_total{reason}`: what was corrected or dropped."""

    LABEL_OVERFLOW = "label_overflow"  # a label value over the per-agent cap became __other__
    INVALID_NAME = "invalid_name"  # empty, non-string or over-long name, coerced
    INVALID_SCORE = "invalid_score"  # NaN, inf, negative or > 100: not observed
    SCORE_CORRECTED = "score_corrected"  # a percentage (1 < x <= 100) divided by 100
    INVALID_USAGE = "invalid_usage"  # negative or non-numeric token counts: not counted
    UNKNOWN_CAUSE = "unknown_cause"  # a failure cause outside FailureCause: recorded as error
    UNKNOWN_REASON = "unknown_reason"  # a pending reason outside PendingReason: recorded as queued
    UNKNOWN_STATUS = "unknown_status"  # a step status outside StepStatus: ignored
    CONTENT_TRUNCATED = "content_truncated"  # captured content cut to the size limit
    CONTENT_UNSERIALISABLE = "content_unserialisable"  # parts replaced by their repr()
    REDACT_ERROR = "redact_error"  # the user's redaction hook raised: content withheld
    USE_AFTER_END = "use_after_end"  # a call on a step or execution that had already ended
    INVALID_CARRIER = "invalid_carrier"  # resume_execution() got a forged or corrupted carrier
    EXPORT_FAILURE = "export_failure"  # spans the OTLP exporter could not deliver
    EXPORT_QUEUE_FULL = "export_queue_full"  # spans dropped because the export queue was full
    INTERNAL_ERROR = "internal_error"  # a bug in the library, caught at the boundary
    BAD_SPAN = "bad_span"  # another instrumentation's span the span bridge could not read
    TRACE_OVER_BUDGET = "trace_over_budget"  # spans past the span bridge's per-trace or open-trace budget
    SAMPLING_OVERFLOW = "sampling_overflow"  # held spans over a sampling cap: exported before the decision
    TASK_STORE_FULL = "task_store_full"  # events past the task store's queue while its writer lagged
    TASK_STORE_UNAVAILABLE = "task_store_unavailable"  # row changes dropped: the store was unreachable too long
    TRACE_EXPIRED = "trace_expired"  # span bridge: a trace idle past its timeout with its local root open
    LATE_SPAN = "late_span"  # span bridge: a span ending after its trace was assembled or expired


class SamplingReason(StrEnum):
    """Why a trace was kept (`task.sampling.reason`, set while `sample_healthy` < 1) or dropped."""

    FAILED = "failed"  # the execution failed (any cause but timeout)
    TIMEOUT = "timeout"  # it failed by timeout
    CANCELLED = "cancelled"
    STEP_FAILED = "step_failed"  # a step failed
    NEEDS_REVIEW = "needs_review"  # a step was flagged for review
    EVALUATION_FAILED = "evaluation_failed"  # an evaluation failed
    SLOW = "slow"  # ran longer than the agent's max_runtime_seconds objective
    SUSPENDED = "suspended"  # suspended or resumed: kept in every part, so the trace stays whole
    SAMPLED = "sampled"  # healthy, and its trace id fell in the sample_healthy fraction
    KEEP_ALL = "keep_all"  # not held: sample_healthy is 1 (or no holder in the export), so kept
    HEALTHY = "healthy"  # dropped: healthy, outside the sample_healthy fraction
    HEAD_SAMPLER = "head_sampler"  # dropped: the head sampler had already dropped the trace


class SamplingDecision(StrEnum):
    KEPT = "kept"
    DROPPED = "dropped"


OTHER_LABEL_VALUE: Final = "__other__"  # where label values over the cardinality cap go
UNKNOWN_LABEL_VALUE: Final = "unknown"  # an empty or missing name

# --------------------------------------------------------------------------- label names

LABEL_AGENT: Final = "agent"
LABEL_TRIGGER: Final = "trigger"
LABEL_STATUS: Final = "status"
LABEL_CAUSE: Final = "cause"
LABEL_REASON: Final = "reason"
LABEL_STEP: Final = "step"
LABEL_TOOL: Final = "tool"
LABEL_OUTCOME: Final = "outcome"
LABEL_RESULT: Final = "result"
LABEL_TYPE: Final = "type"
LABEL_PATH: Final = "path"
LABEL_OBJECTIVE: Final = "objective"
LABEL_DECISION: Final = "decision"
LABEL_VERSION: Final = "version"  # the agent's version (configure(agent_version=) / execution(version=))
LABEL_EVALUATION: Final = "evaluation"  # the evaluation criterion: step.evaluate()'s name
EXEMPLAR_TRACE_ID: Final = "trace_id"  # the exemplar label Grafana links to Jaeger with

# --------------------------------------------------------------------------- buckets

# Runtime of a whole execution or a step: 0.1 s to 1 h, dense between 30 s and 5 min so that
# p95 against the default 120 s objective is resolved to within about 15 %.
DURATION_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0, 105.0,
    120.0, 135.0, 150.0, 180.0, 240.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
)  # fmt: skip
# Tool response time: 10 ms to 2 min; APIs and model calls live between 50 ms and 30 s.
TOOL_DURATION_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# Time spent pending (queued or awaiting a human): 1 s to 1 day, dense around the 30 min objective.
PENDING_DURATION_BUCKETS: Final = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0,
    3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
)  # fmt: skip
# Evaluation scores 0-1: coarse below 0.5, fine from 0.5 to 1.0 where objectives sit.
SCORE_BUCKETS: Final = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)

# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: its exposed name, type, labels and help text."""

    name: str
    type: str  # counter | histogram | gauge
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] | None = None


EXECUTIONS_STARTED: Final = MetricSpec(
    "agent_executions_started_total", "counter", (LABEL_AGENT, LABEL_TRIGGER),
    "Executions that began running.",
)  # fmt: skip
EXECUTIONS_FINISHED: Final = MetricSpec(
    "agent_executions_finished_total", "counter", (LABEL_AGENT, LABEL_TRIGGER, LABEL_STATUS),
    "Executions that ended, by terminal status (completed, failed, cancelled).",
)  # fmt: skip
EXECUTION_FAILURES: Final = MetricSpec(
    "agent_execution_failures_total", "counter", (LABEL_AGENT, LABEL_TRIGGER, LABEL_CAUSE),
    "Failed executions by cause.",
)  # fmt: skip
EXECUTION_DURATION: Final = MetricSpec(
    "agent_execution_duration_seconds", "histogram", (LABEL_AGENT, LABEL_TRIGGER, LABEL_STATUS),
    "Trigger-to-end runtime of an execution, excluding time spent pending.", DURATION_BUCKETS,
)  # fmt: skip
EXECUTION_EVALUATION_SCORE: Final = MetricSpec(
    "agent_execution_evaluation_score", "histogram", (LABEL_AGENT, LABEL_TRIGGER),
    "Mean evaluation score of an execution, 0-1.", SCORE_BUCKETS,
)  # fmt: skip
EXECUTIONS_IN_PROGRESS: Final = MetricSpec(
    "agent_executions_in_progress", "gauge", (LABEL_AGENT,),
    "Executions running now in this process.",
)  # fmt: skip
EXECUTIONS_PENDING: Final = MetricSpec(
    "agent_executions_pending", "gauge", (LABEL_AGENT, LABEL_REASON),
    "Executions waiting now in this process (queued, or awaiting approval).",
)  # fmt: skip
EXECUTION_PENDING_OLDEST: Final = MetricSpec(
    "agent_execution_pending_oldest_timestamp_seconds", "gauge", (LABEL_AGENT, LABEL_REASON),
    "Unix time the oldest still-pending execution began waiting (0 when none).",
)  # fmt: skip
# From the task store (`configure(task_store=...)`): every waiting execution, whichever process
# suspended it. Each process with the store exports the same values: aggregate with max, not sum.
TASKS_WAITING: Final = MetricSpec(
    "agent_tasks_waiting", "gauge", (LABEL_AGENT, LABEL_REASON),
    "Executions waiting now (queued, awaiting approval, or suspended), read from the task store.",
)  # fmt: skip
TASKS_WAITING_OLDEST: Final = MetricSpec(
    "agent_tasks_waiting_oldest_timestamp_seconds", "gauge", (LABEL_AGENT, LABEL_REASON),
    "Unix time the oldest execution waiting in the task store began waiting (0 when none).",
)  # fmt: skip
EXECUTION_PENDING_DURATION: Final = MetricSpec(
    "agent_execution_pending_duration_seconds", "histogram", (LABEL_AGENT, LABEL_REASON),
    "How long executions waited (queued or for approval) before running.", PENDING_DURATION_BUCKETS,
)  # fmt: skip
STEPS: Final = MetricSpec(
    "agent_steps_total", "counter", (LABEL_AGENT, LABEL_STEP, LABEL_STATUS),
    "Steps that ended, by step status (passed, failed, needs_review).",
)  # fmt: skip
STEP_DURATION: Final = MetricSpec(
    "agent_step_duration_seconds", "histogram", (LABEL_AGENT, LABEL_STEP),
    "Runtime of one step.", DURATION_BUCKETS,
)  # fmt: skip
STEP_EVALUATION_SCORE: Final = MetricSpec(
    "agent_step_evaluation_score", "histogram", (LABEL_AGENT, LABEL_STEP),
    "Each evaluation score of a step, 0-1.", SCORE_BUCKETS,
)  # fmt: skip
EVALUATIONS: Final = MetricSpec(
    "agent_evaluations_total", "counter", (LABEL_AGENT, LABEL_STEP, LABEL_EVALUATION, LABEL_RESULT),
    "Evaluations of steps, by criterion and result (pass, fail).",
)  # fmt: skip
TOOL_CALLS: Final = MetricSpec(
    "agent_tool_calls_total", "counter", (LABEL_AGENT, LABEL_TOOL, LABEL_OUTCOME),
    "Tool and integration calls, by outcome (success, error, timeout).",
)  # fmt: skip
TOOL_CALL_DURATION: Final = MetricSpec(
    "agent_tool_call_duration_seconds", "histogram", (LABEL_AGENT, LABEL_TOOL),
    "Response time of a tool or integration call.", TOOL_DURATION_BUCKETS,
)  # fmt: skip
TOKENS: Final = MetricSpec(
    "agent_tokens_total", "counter", (LABEL_AGENT, LABEL_STEP, LABEL_TYPE),
    "Tokens used, by step and type (input, output).",
)  # fmt: skip
BRANCH_DECISIONS: Final = MetricSpec(
    "agent_branch_decisions_total", "counter", (LABEL_AGENT, LABEL_STEP, LABEL_PATH),
    "Paths taken at decision points.",
)  # fmt: skip
OBJECTIVE: Final = MetricSpec(
    "agent_objective", "gauge", (LABEL_AGENT, LABEL_OBJECTIVE),
    "The agent's configured targets, read by the alert rules and dashboards.",
)  # fmt: skip
EXPORTER_DROPPED: Final = MetricSpec(
    "agent_exporter_dropped_total", "counter", (LABEL_REASON,),
    "Telemetry the library had to drop or correct, by reason.",
)  # fmt: skip
SAMPLING_DECISIONS: Final = MetricSpec(
    "agent_exporter_sampling_decisions_total", "counter", (LABEL_DECISION, LABEL_REASON),
    "Executions whose trace was kept or dropped, by reason (sample_healthy, the head sampler).",
)  # fmt: skip

# Versions: an info gauge, and a few execution-level series with a `version` label and no other
# dimension (no trigger, step or tool), so that each version costs ~50 series per agent, not a
# copy of every family. Enough to compare two versions side by side (docs/telemetry.md, Versions).
AGENT_INFO: Final = MetricSpec(
    "agent_info", "gauge", (LABEL_AGENT, LABEL_VERSION),
    "1 for each version of an agent this process has run an execution of.",
)  # fmt: skip
VERSION_EXECUTIONS_FINISHED: Final = MetricSpec(
    "agent_version_executions_finished_total", "counter", (LABEL_AGENT, LABEL_VERSION, LABEL_STATUS),
    "Executions that ended, by agent version and terminal status.",
)  # fmt: skip
VERSION_EXECUTION_DURATION: Final = MetricSpec(
    "agent_version_execution_duration_seconds", "histogram", (LABEL_AGENT, LABEL_VERSION),
    "Runtime of an execution (pending excluded), by agent version.", DURATION_BUCKETS,
)  # fmt: skip
VERSION_EXECUTION_EVALUATION_SCORE: Final = MetricSpec(
    "agent_version_execution_evaluation_score", "histogram", (LABEL_AGENT, LABEL_VERSION),
    "Mean evaluation score of an execution, 0-1, by agent version.", SCORE_BUCKETS,
)  # fmt: skip
VERSION_TOOL_CALLS: Final = MetricSpec(
    "agent_version_tool_calls_total", "counter", (LABEL_AGENT, LABEL_VERSION, LABEL_OUTCOME),
    "Tool and integration calls, by agent version and outcome.",
)  # fmt: skip
VERSION_TOKENS: Final = MetricSpec(
    "agent_version_tokens_total", "counter", (LABEL_AGENT, LABEL_VERSION, LABEL_TYPE),
    "Tokens used, by agent version and type (input, output).",
)  # fmt: skip

# --------------------------------------------------------------------------- cost and models (issue 24)


class LlmTokenType(StrEnum):
    """`type` of `agent_llm_tokens_total`. CACHE_READ and CACHE_WRITE are parts of INPUT, REASONING
    is part of OUTPUT: sum only input and output for a total."""

    INPUT = "input"
    OUTPUT = "output"
    CACHE_READ = "cache_read"
    CACHE_WRITE = "cache_write"
    REASONING = "reasoning"


class LlmOutcome(StrEnum):
    """`outcome` of `agent_llm_calls_total`."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"  # the exception's type, status code or message says 429 / rate limit


LABEL_PROVIDER: Final = "provider"  # gen_ai.provider.name (genai-prices' id when only the model was named)
LABEL_MODEL: Final = "model"  # the model as the call named it

# Cost of one execution in USD: a cent to $50, dense between 5 cents and $2 where most agent tasks sit.
COST_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
    3.0, 5.0, 10.0, 25.0, 50.0,
)  # fmt: skip
# One model call: 50 ms (a cached short answer) to 5 min (a long reasoning call).
LLM_DURATION_BUCKETS: Final = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

LLM_TOKENS: Final = MetricSpec(
    "agent_llm_tokens_total", "counter", (LABEL_AGENT, LABEL_PROVIDER, LABEL_MODEL, LABEL_TYPE),
    "Model tokens by provider, model and type (input, output; cache_read and cache_write are parts of input, "
    "reasoning is part of output).",
)  # fmt: skip
LLM_CALLS: Final = MetricSpec(
    "agent_llm_calls_total", "counter", (LABEL_AGENT, LABEL_PROVIDER, LABEL_MODEL, LABEL_OUTCOME),
    "Model calls by outcome (success, error, timeout, rate_limited).",
)  # fmt: skip
LLM_CALL_DURATION: Final = MetricSpec(
    "agent_llm_call_duration_seconds", "histogram", (LABEL_AGENT, LABEL_PROVIDER, LABEL_MODEL),
    "Latency of one model call.", LLM_DURATION_BUCKETS,
)  # fmt: skip
COST: Final = MetricSpec(
    "agent_cost_usd_total", "counter", (LABEL_AGENT, LABEL_PROVIDER, LABEL_MODEL),
    "Spend on model calls in US dollars, from genai-prices or configure(prices=).",
)  # fmt: skip
EXECUTION_COST: Final = MetricSpec(
    "agent_execution_cost_usd", "histogram", (LABEL_AGENT, LABEL_TRIGGER),
    "Model spend of one execution in US dollars (its priced usage).", COST_BUCKETS,
)  # fmt: skip
VERSION_COST: Final = MetricSpec(
    "agent_version_cost_usd_total", "counter", (LABEL_AGENT, LABEL_VERSION),
    "Spend on model calls in US dollars, by agent version.",
)  # fmt: skip
LLM_UNPRICED_TOKENS: Final = MetricSpec(
    "agent_llm_unpriced_tokens_total", "counter", (LABEL_AGENT, LABEL_PROVIDER, LABEL_MODEL),
    "Input plus output tokens of models with no known price (not in agent_cost_usd_total; never guessed).",
)  # fmt: skip

OBJECTIVE_DAILY_COST_USD: Final = "daily_cost_usd"  # no default: budgets are the agent's own

SPAN_LLM_CALL: Final = "chat {model}"  # format with model=
OPERATION_CHAT: Final = "chat"
ATTR_GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
ATTR_GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
ATTR_GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
ATTR_GEN_AI_SYSTEM: Final = "gen_ai.system"  # the older name of gen_ai.provider.name (read only)
ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
ATTR_GEN_AI_USAGE_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
ATTR_TASK_COST_USD: Final = "task.cost.usd"  # a model call's or an execution's priced spend
ATTR_TASK_UNPRICED_TOKENS: Final = "task.cost.unpriced_tokens"  # tokens of models with no known price

COST_SPAN_ATTRIBUTES: Final = (
    ATTR_GEN_AI_REQUEST_MODEL, ATTR_GEN_AI_RESPONSE_MODEL, ATTR_GEN_AI_PROVIDER_NAME,
    ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS, ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS, ATTR_GEN_AI_USAGE_REASONING_TOKENS,
    ATTR_TASK_COST_USD, ATTR_TASK_UNPRICED_TOKENS,
)  # fmt: skip
COST_ALERTS: Final = ("AgentCostSpike", "AgentDailyBudgetBurn", "AgentLLMErrorsHigh")


METRICS: Final[tuple[MetricSpec, ...]] = (
    EXECUTIONS_STARTED, EXECUTIONS_FINISHED, EXECUTION_FAILURES, EXECUTION_DURATION,
    EXECUTION_EVALUATION_SCORE, EXECUTIONS_IN_PROGRESS, EXECUTIONS_PENDING, EXECUTION_PENDING_OLDEST,
    EXECUTION_PENDING_DURATION, STEPS, STEP_DURATION, STEP_EVALUATION_SCORE, EVALUATIONS, TOOL_CALLS,
    TOOL_CALL_DURATION, TOKENS, BRANCH_DECISIONS, OBJECTIVE, EXPORTER_DROPPED, SAMPLING_DECISIONS,
    TASKS_WAITING, TASKS_WAITING_OLDEST,
    AGENT_INFO, VERSION_EXECUTIONS_FINISHED, VERSION_EXECUTION_DURATION, VERSION_EXECUTION_EVALUATION_SCORE,
    VERSION_TOOL_CALLS, VERSION_TOKENS,
    LLM_TOKENS, LLM_CALLS, LLM_CALL_DURATION, COST, EXECUTION_COST, VERSION_COST, LLM_UNPRICED_TOKENS,
)  # fmt: skip


def exposed_series_names(spec: MetricSpec) -> tuple[str, ...]:
    """The series names Prometheus stores for a family (histograms expand to three)."""
    if spec.type == "histogram":
        return (spec.name + "_bucket", spec.name + "_sum", spec.name + "_count")
    return (spec.name,)


# --------------------------------------------------------------------------- objectives

OBJECTIVE_COMPLETION_RATIO: Final = "completion_ratio"
OBJECTIVE_MAX_RUNTIME_SECONDS: Final = "max_runtime_seconds"
OBJECTIVE_MIN_EVALUATION_SCORE: Final = "min_evaluation_score"
OBJECTIVE_MAX_TOOL_ERROR_RATIO: Final = "max_tool_error_ratio"
OBJECTIVE_MAX_PENDING_SECONDS: Final = "max_pending_seconds"

DEFAULT_OBJECTIVES: Final[dict[str, float]] = {
    OBJECTIVE_COMPLETION_RATIO: 0.95,
    OBJECTIVE_MAX_RUNTIME_SECONDS: 120.0,
    OBJECTIVE_MIN_EVALUATION_SCORE: 0.90,
    OBJECTIVE_MAX_TOOL_ERROR_RATIO: 0.10,
    OBJECTIVE_MAX_PENDING_SECONDS: 1800.0,
}

# --------------------------------------------------------------------------- traces

SPAN_EXECUTION: Final = "invoke_workflow {agent}"  # format with agent=
SPAN_TOOL_CALL: Final = "execute_tool {tool}"  # format with tool=
# A step span is named after the step itself.

OPERATION_INVOKE_WORKFLOW: Final = "invoke_workflow"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"

# GenAI semantic conventions
ATTR_GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
ATTR_GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
ATTR_GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
ATTR_GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
ATTR_GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
ATTR_GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
ATTR_GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
ATTR_ERROR_TYPE: Final = "error.type"

# Execution span, task namespace
ATTR_TASK_ID: Final = "task.id"
ATTR_TASK_TRIGGER: Final = "task.trigger"
ATTR_TASK_STATUS: Final = "task.status"
ATTR_TASK_FAILURE_CAUSE: Final = "task.failure.cause"
ATTR_TASK_DESCRIPTION: Final = "task.description"
ATTR_TASK_EVALUATION_SCORE: Final = "task.evaluation.score"
ATTR_TASK_SAMPLING_REASON: Final = "task.sampling.reason"  # why a sampled trace was kept (SamplingReason)
ATTR_TASK_STEPS_TOTAL: Final = "task.steps.total"  # the steps the execution declared: execution(steps=n)

# Step span
ATTR_STEP_NAME: Final = "task.step.name"
ATTR_STEP_INDEX: Final = "task.step.index"
ATTR_STEP_STATUS: Final = "task.step.status"
ATTR_STEP_INPUT: Final = "task.step.input"
ATTR_STEP_OUTPUT: Final = "task.step.output"

# Events on the execution span
EVENT_PENDING: Final = "pending"
EVENT_RESUMED: Final = "resumed"
ATTR_PENDING_REASON: Final = "task.pending.reason"
ATTR_PENDING_SECONDS: Final = "task.pending.duration"

# Evaluation event on the step span
EVENT_EVALUATION: Final = "gen_ai.evaluation.result"
ATTR_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
ATTR_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
ATTR_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
ATTR_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"

# Branch decision event on the step span
EVENT_BRANCH_DECISION: Final = "task.branch.decision"
ATTR_BRANCH_CONDITION: Final = "task.branch.condition"
ATTR_BRANCH_SELECTED: Final = "task.branch.selected"
ATTR_BRANCH_NOT_SELECTED: Final = "task.branch.not_selected"
ATTR_BRANCH_REASON: Final = "task.branch.reason"

# Review flag event on the step span
EVENT_REVIEW_FLAG: Final = "task.review.flagged"
ATTR_REVIEW_REASON: Final = "task.review.reason"

SPAN_ATTRIBUTES: Final = (
    ATTR_GEN_AI_OPERATION_NAME, ATTR_GEN_AI_WORKFLOW_NAME, ATTR_GEN_AI_AGENT_NAME, ATTR_GEN_AI_AGENT_VERSION,
    ATTR_GEN_AI_TOOL_NAME, ATTR_GEN_AI_TOOL_CALL_ID, ATTR_GEN_AI_USAGE_INPUT_TOKENS, ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
    ATTR_ERROR_TYPE, ATTR_TASK_ID, ATTR_TASK_TRIGGER, ATTR_TASK_STATUS, ATTR_TASK_FAILURE_CAUSE,
    ATTR_TASK_DESCRIPTION, ATTR_TASK_EVALUATION_SCORE, ATTR_TASK_SAMPLING_REASON, ATTR_STEP_NAME,
    ATTR_STEP_INDEX, ATTR_STEP_STATUS, ATTR_STEP_INPUT, ATTR_STEP_OUTPUT,
    ATTR_TASK_STEPS_TOTAL, *COST_SPAN_ATTRIBUTES,
    "task.input", "task.output", "task.rerun.of",  # ATTR_TASK_INPUT, _OUTPUT, _RERUN_OF (re-runs, below)
)  # fmt: skip
EVENT_ATTRIBUTES: Final = (
    ATTR_PENDING_REASON, ATTR_PENDING_SECONDS, ATTR_EVALUATION_NAME, ATTR_EVALUATION_SCORE_VALUE,
    ATTR_EVALUATION_SCORE_LABEL, ATTR_EVALUATION_EXPLANATION, ATTR_BRANCH_CONDITION,
    ATTR_BRANCH_SELECTED, ATTR_BRANCH_NOT_SELECTED, ATTR_BRANCH_REASON, ATTR_REVIEW_REASON,
)  # fmt: skip
EVENTS: Final = (EVENT_PENDING, EVENT_RESUMED, EVENT_EVALUATION, EVENT_BRANCH_DECISION, EVENT_REVIEW_FLAG)

# --------------------------------------------------------------------------- logs

LOG_EXECUTION_STARTED: Final = "execution_started"
LOG_EXECUTION_FINISHED: Final = "execution_finished"
LOG_EXECUTION_FAILED: Final = "execution_failed"
LOG_EXECUTION_SUSPENDED: Final = "execution_suspended"
LOG_EXECUTION_RESUMED: Final = "execution_resumed"
LOG_STEP_FINISHED: Final = "step_finished"
LOG_BRANCH_DECISION: Final = "branch_decision"
LOG_EXPORTER_WARNING: Final = "exporter_warning"  # the library's own rate-limited warnings (`detail`)

# --------------------------------------------------------------------------- alerts

ALERTS: Final = (
    "AgentCompletionRateLow",
    "AgentCompletionErrorBudgetBurn",
    "AgentTriggerCompletionRateLow",
    "AgentRuntimeHigh",
    "AgentEvaluationScoreLow",
    "AgentToolErrorRateHigh",
    "AgentTasksStuckPending",
    "AgentRuntimeDeviation",
    "AgentEvaluationScoreDrop",
    "AgentExecutionsStalled",
    "AgentExporterDown",
    "AgentExecutionsAllFailing",
    "AgentLowVolumeFailures",
    *COST_ALERTS,
)
SCRAPE_JOB: Final = "agent-exporter"  # the job name the shipped Prometheus configuration uses

# --------------------------------------------------------------------------- waits of other instrumentations' runs

# A framework or another language's root span that ends waiting for a human says so with
# `task.status = "waiting"` (and optionally `task.waiting_reason`, a PendingReason, default approval).
TASK_STATUS_WAITING: Final = "waiting"
ATTR_TASK_WAITING_REASON: Final = "task.waiting_reason"
# Attributes the library only reads, from other instrumentations' and other languages' spans.
READ_ATTRIBUTES: Final = (ATTR_TASK_WAITING_REASON,)

# --------------------------------------------------------------------------- re-runs (issue 26)

# The execution's own input and output, `run.record_input()` / `run.record_output()` (captured like a
# step's content: masked, redacted, truncated; nothing with capture_content=False).
ATTR_TASK_INPUT: Final = "task.input"
ATTR_TASK_OUTPUT: Final = "task.output"
# On an execution started inside `agent-exporter rerun` / `exporter.rerun()`: the id of the case
# (the original task id) it re-ran. Its trigger is TRIGGER_RERUN.
ATTR_TASK_RERUN_OF: Final = "task.rerun.of"
TRIGGER_RERUN: Final = "rerun"
