"""Other instrumentations' spans to events: the mapping the span bridge and OTLP ingest share.

A span is first reduced to a `SpanSummary` (what the mapping needs, nothing else: memory stays
small while a trace is assembled), then a finished subtree becomes events:

- **execution**: a span of an agent operation (GenAI `invoke_agent` / `invoke_workflow`,
  OpenInference AGENT, or a CHAIN at the top) with no such span above it. Nested agent spans
  are structure, not more executions. A span of this library's own is never counted again:
  framework spans under `exporter.execution()` fill that execution's steps, tools and tokens.
- **steps**: graph nodes (LangGraph through OpenInference `metadata.langgraph_node`, or
  OpenLLMetry `execute_task`), else inference spans (GenAI `chat` & co., OpenInference LLM).
- **tool calls**: GenAI `execute_tool`, OpenInference TOOL; outcome from status / `error.type`.
- **tokens**: on inference spans only (`gen_ai.usage.*`, `llm.token_count.*`), never the agent's
  aggregated totals, so nothing is counted twice; with the model, provider and the cache read /
  write and reasoning parts (GenAI and OpenInference names), priced like the native API's
  (`prices`), and each inference span counted as a model call with its latency and outcome.
- **evaluations**: `gen_ai.evaluation.result` span events.
- **failure**: the execution span ERROR, or an agent / chain / node span below it ERROR that the
  run did not go on from (the OpenAI Agents SDK instrumentors leave the root OK when the run
  failed: its failing turn is its last); an errored one followed by an OK sibling of the same role
  was recovered (smolagents' `Step 1` ERROR from a raising tool, then `Step 2` answers). The cause
  from the deepest errored span (a tool: `tool_error`) or the exception type.
- **agent label**: `gen_ai.agent.name` / `agent.name` on the execution span or an agent span below,
  the AI SDK's `ai.telemetry.functionId`; else `agent_label()` of the span name (docs/telemetry.md).
- **the Vercel AI SDK's `ai.*` format** (its `LegacyOpenTelemetry`, the only one in AI SDK <= 6,
  no `gen_ai.operation.name`): `ai.generateText` / `ai.streamText` / `ai.generateObject` /
  `ai.streamObject` are executions, `<run>.doGenerate` / `<run>.doStream` model calls (usage from
  `gen_ai.usage.*` or `ai.usage.*` there only, never the run's totals; step `chat {model}`, as v7
  names it), `ai.toolCall` tools; trigger and task id from `task.trigger` / `task.id`, else
  `ai.telemetry.metadata.task.trigger` / `.task.id` (AI SDK <= 6 metadata) or
  `ai.settings.context.task.trigger` / `.task.id` (v7 runtime context).
- **waiting**: a run that stopped for a human finishes nothing: its execution ends in
  `ExecutionSuspended` (reason, runtime so far) instead of `ExecutionFinished`. Said by the root
  span's `task.status = "waiting"` (any sender; `task.waiting_reason`, default `approval`), or by a
  LangGraph interrupt below it: the `GraphInterrupt` exception LangGraph raises inside the node
  and catches (an `exception` event under OpenInference, the node span ERROR with `error.type`
  under OpenLLMetry) is a wait, not an error; or by Pydantic AI's root span whose `final_result`
  is a `DeferredToolRequests` (recorded with content only). `spans.waits` turns the suspension into a wait and
  the next run of the same agent and task id into its resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .. import semconv as sc
from ..pipeline.events import (
    EvaluationRecorded,
    Event,
    ExecutionFinished,
    ExecutionRef,
    ExecutionStarted,
    ExecutionSuspended,
    LlmCallFinished,
    StepFinished,
    TokensUsed,
    ToolCallFinished,
)
from ..pricing import Prices
from ..semconv import FailureCause, LlmOutcome, PendingReason, ToolOutcome

OWN_SCOPE = "agent_exporter"  # the instrumentation scope of the library's own spans
# Seconds a trace that cannot complete is held, in the span bridge (idle, its local root never
# ended) and in OTLP ingest (its root never arrived): one default for both.
DEFAULT_TRACE_TIMEOUT = 300.0

# Roles a span can play.
AGENT, CHAIN, NODE, LLM, TOOL, NATIVE_EXECUTION, NATIVE_STEP, OTHER = (
    "agent", "chain", "node", "llm", "tool", "native_execution", "native_step", "other",
)  # fmt: skip
_STRUCTURE = frozenset({AGENT, CHAIN, NODE})

_AGENT_OPS = frozenset({"invoke_agent", "invoke_workflow", "create_agent"})
_LLM_OPS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_OI_KIND = "openinference.span.kind"
_OI_ROLES = {"AGENT": AGENT, "CHAIN": CHAIN, "LLM": LLM, "TOOL": TOOL}

ATTR_TASK_TRIGGER = sc.ATTR_TASK_TRIGGER
ATTR_TASK_ID = sc.ATTR_TASK_ID
# Exceptions that stop a run to wait for a human (LangGraph's `interrupt()`; NodeInterrupt is its
# deprecated subclass): matched on the class name, with or without the module.
_INTERRUPTS = frozenset({"GraphInterrupt", "NodeInterrupt"})
_WAITING = frozenset({sc.TASK_STATUS_WAITING, sc.ExecutionStatus.PENDING.value})
_REASONS = frozenset(r.value for r in PendingReason)
_MAX_DEFERRED = 1_000_000  # characters of a `final_result` parsed to find deferred tool calls
_MAX_VERSION = 100  # characters of a version read from a span, as of any name the library records
_MAX_NAME = 100  # characters of a model or provider name read from a span

# Model-call attributes, first found wins: the GenAI conventions (and their older names), OpenInference.
_MODEL_KEYS = (sc.ATTR_GEN_AI_REQUEST_MODEL, sc.ATTR_GEN_AI_RESPONSE_MODEL, "llm.model_name")
_PROVIDER_KEYS = (sc.ATTR_GEN_AI_PROVIDER_NAME, sc.ATTR_GEN_AI_SYSTEM, "llm.provider", "llm.system")
_CACHE_READ_KEYS = (sc.ATTR_GEN_AI_USAGE_CACHE_READ_TOKENS, "gen_ai.usage.cache_read_input_tokens",
                    "llm.token_count.prompt_details.cache_read")  # fmt: skip
_CACHE_WRITE_KEYS = (
    sc.ATTR_GEN_AI_USAGE_CACHE_CREATION_TOKENS, "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens", "llm.token_count.prompt_details.cache_write",
)  # fmt: skip
_REASONING_KEYS = (sc.ATTR_GEN_AI_USAGE_REASONING_TOKENS, "gen_ai.usage.reasoning_tokens",
                   "llm.token_count.completion_details.reasoning")  # fmt: skip


class SpanSummary(NamedTuple):
    """What the mapping keeps of one ended span."""

    span_id: int
    parent_id: int | None
    name: str
    role: str
    error: str | None  # None = not failed; else the error's type or description
    start_ns: int
    end_ns: int
    agent: str | None = None  # gen_ai.agent.name / agent.name
    tool: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    trigger: str | None = None  # task.trigger, from attributes or `exporter.task()`
    task_id: str | None = None
    evaluations: tuple[tuple[str, float | None, str | None], ...] = ()
    version: str | None = None  # gen_ai.agent.version, on an agent / chain span
    waiting: str | None = None  # the pending reason when the span says its run stopped to wait
    # On inference spans: the model and provider, and the parts of tokens_in / tokens_out.
    model: str | None = None
    provider: str | None = None
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 else 0


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _first_int(get: Any, keys: tuple[str, ...]) -> int:
    for k in keys:
        n = _int(get(k))
        if n:
            return n
    return 0


def _first_str(get: Any, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = _str(get(k))
        if v is not None:
            return v[:_MAX_NAME]
    return None


def _langgraph_node(attrs: Mapping[str, Any]) -> bool:
    """OpenInference marks LangGraph nodes (and what runs inside them) in its JSON `metadata`."""
    meta = attrs.get("metadata")
    return isinstance(meta, str) and '"langgraph_node"' in meta


def classify(name: str, attrs: Mapping[str, Any], scope: str | None) -> str:
    """The role of a span, from its instrumentation scope and attributes."""
    if scope == OWN_SCOPE:
        if ATTR_TASK_ID in attrs:
            return NATIVE_EXECUTION
        return NATIVE_STEP if sc.ATTR_STEP_NAME in attrs else OTHER
    op = attrs.get(sc.ATTR_GEN_AI_OPERATION_NAME)
    kind = attrs.get(_OI_KIND)
    if op == "execute_task" or (kind in ("CHAIN", "AGENT") and _langgraph_node(attrs)):
        return NODE
    if op == "execute_tool":
        return TOOL
    if op in _AGENT_OPS:
        return AGENT
    if op in _LLM_OPS:
        return LLM
    if kind is not None:
        return _OI_ROLES.get(str(kind), OTHER)
    return _ai_sdk_role(name, attrs) if op is None else OTHER


def summarize(
    span_id: int,
    parent_id: int | None,
    name: str,
    attrs: Mapping[str, Any],
    scope: str | None,
    status_error: bool,
    status_description: str | None,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    start_ns: int,
    end_ns: int,
) -> SpanSummary:
    """Reduce a span (from the SDK or from OTLP) to its summary.

    Only the attributes its role needs are read: this runs for every span of every framework.
    """
    get = attrs.get
    role = classify(name, attrs, scope)
    if role in (OTHER, NATIVE_STEP) and not status_error and not events:
        return SpanSummary(span_id, parent_id, name, role, None, start_ns, end_ns)
    error = waiting = None
    error_type = get(sc.ATTR_ERROR_TYPE)
    if (status_error or error_type or events) and _interrupted(error_type, events):
        waiting = PendingReason.APPROVAL.value  # LangGraph's interrupt(): not an error
    elif status_error or error_type:
        error = _str(error_type) or _exception_type(events) or status_description or "error"
    tin = tout = cache_read = cache_write = reasoning = 0
    tool = agent = trigger = task_id = version = model = provider = None
    if role == LLM:
        tin = _int(get(sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS)) or _int(get("llm.token_count.prompt"))
        tout = _int(get(sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS)) or _int(get("llm.token_count.completion"))
        model = _first_str(get, _MODEL_KEYS)
        provider = _first_str(get, _PROVIDER_KEYS)
        cache_read = _first_int(get, _CACHE_READ_KEYS)
        cache_write = _first_int(get, _CACHE_WRITE_KEYS)
        reasoning = _first_int(get, _REASONING_KEYS)
    elif role == TOOL:
        tool = _str(get(sc.ATTR_GEN_AI_TOOL_NAME)) or _str(get("tool.name")) or name
    elif role == NODE:
        name = _str(get("gen_ai.task.name")) or name
    elif role in (AGENT, CHAIN):
        agent = _str(get(sc.ATTR_GEN_AI_AGENT_NAME)) or _str(get("agent.name"))
        trigger = _str(get(ATTR_TASK_TRIGGER))
        task_id = _str(get(ATTR_TASK_ID))
        version = _str(get(sc.ATTR_GEN_AI_AGENT_VERSION))
        version = version[:_MAX_VERSION] if version else None
        if get(sc.ATTR_TASK_STATUS) in _WAITING:
            reason = get(sc.ATTR_TASK_WAITING_REASON)
            waiting = reason if reason in _REASONS else PendingReason.APPROVAL.value
        else:
            waiting = waiting or _deferred(get("final_result"))
    if _AI_OPERATION_ID in attrs and role in (LLM, TOOL, AGENT):
        # The AI SDK's `ai.*` format (its LegacyOpenTelemetry; the only one in AI SDK <= 6).
        if role == LLM:
            tin = tin or _int(get("ai.usage.inputTokens")) or _int(get("ai.usage.promptTokens"))
            tout = tout or _int(get("ai.usage.outputTokens")) or _int(get("ai.usage.completionTokens"))
            ai_model = _str(get("ai.model.id"))
            name = f"chat {ai_model[:_MAX_VERSION]}" if ai_model else name  # the step v7 names `chat {model}`
        elif role == TOOL:
            tool = _str(get("ai.toolCall.name")) or tool
        else:
            agent = agent or _str(get("ai.telemetry.functionId")) or _str(get("ai.model.id"))
            trigger = trigger or _ai_sdk_task(get, "trigger")
            task_id = task_id or _ai_sdk_task(get, "id")
    evaluations: tuple[tuple[str, float | None, str | None], ...] = ()
    if events:
        evaluations = tuple(
            (
                _str(a.get(sc.ATTR_EVALUATION_NAME)) or "evaluation",
                _score(a.get(sc.ATTR_EVALUATION_SCORE_VALUE)),
                _str(a.get(sc.ATTR_EVALUATION_SCORE_LABEL)),
            )
            for n, a in events
            if n == sc.EVENT_EVALUATION
        )
    return SpanSummary(
        span_id,
        parent_id,
        name,
        role,
        error,
        start_ns,
        end_ns,
        agent,
        tool,
        tin,
        tout,
        trigger,
        task_id,
        evaluations,
        version,
        waiting,
        model,
        provider,
        cache_read,
        cache_write,
        reasoning,
    )


# The Vercel AI SDK's `ai.*` span format: `ai.generateText` / `ai.streamText` / `ai.generateObject` /
# `ai.streamObject` runs, their model calls `<run>.doGenerate` / `<run>.doStream`, tools `ai.toolCall`.
_AI_OPERATION_ID = "ai.operationId"
_AI_RUNS = frozenset({"ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject"})
_AI_MODEL_CALLS = frozenset(f"{r}.{c}" for r in _AI_RUNS for c in ("doGenerate", "doStream"))
# Where the trigger and task id of an AI SDK run are read when no `task.trigger` / `task.id` is set:
# AI SDK <= 6 `experimental_telemetry.metadata` ({"task.trigger": ...}), v7 legacy runtime context
# ({task: {trigger: ...}} with `includeRuntimeContext: {task: true}`).
_AI_TASK_PREFIXES = ("ai.telemetry.metadata.task.", "ai.settings.context.task.")


def _ai_sdk_role(name: str, attrs: Mapping[str, Any]) -> str:
    """The role of an AI SDK `ai.*` span (`ai.operationId`, else the span name), or OTHER."""
    op = attrs.get(_AI_OPERATION_ID, name)
    if op in _AI_RUNS:
        return AGENT
    if op in _AI_MODEL_CALLS:
        return LLM
    return TOOL if op == "ai.toolCall" else OTHER


def _ai_sdk_task(get: Any, key: str) -> str | None:
    for prefix in _AI_TASK_PREFIXES:
        v = get(prefix + key)
        if isinstance(v, str | int) and not isinstance(v, bool) and v != "":
            return str(v)
    return None


def _interrupted(error_type: Any, events: Sequence[tuple[str, Mapping[str, Any]]]) -> bool:
    """The span's error (or a caught exception on it) is a LangGraph interrupt."""
    if isinstance(error_type, str) and error_type.rpartition(".")[2] in _INTERRUPTS:
        return True
    for n, a in events:
        if n == "exception":
            t = a.get("exception.type")
            if isinstance(t, str) and t.rpartition(".")[2] in _INTERRUPTS:
                return True
    return False


def _deferred(result: Any) -> str | None:
    """Pydantic AI's run output `DeferredToolRequests` (its `final_result`, when content is recorded):
    tool calls awaiting approval (`approval`) or run elsewhere (`queued`)."""
    if not isinstance(result, str) or not result.startswith('{"calls":') or len(result) > _MAX_DEFERRED:
        return None
    try:
        out = json.loads(result)
    except ValueError:
        return None
    if not isinstance(out, dict) or not isinstance(out.get("approvals"), list) or not isinstance(out["calls"], list):
        return None
    if out["approvals"]:
        return PendingReason.APPROVAL.value
    return PendingReason.QUEUED.value if out["calls"] else None


def _exception_type(events: Sequence[tuple[str, Mapping[str, Any]]]) -> str | None:
    for n, a in events:
        if n == "exception":
            return _str(a.get("exception.type"))
    return None


def _score(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1:
        return float(v)
    return None


# ------------------------------------------------------------------------------- assembly


class Native(NamedTuple):
    """A native execution (or step) span's identity, for framework spans found under it."""

    ref: ExecutionRef
    step: str | None  # the native step's name, when under one


def _cause(error: str) -> str:
    e = error.lower()
    if "timeout" in e or "timed out" in e:
        return FailureCause.TIMEOUT.value
    if any(k in e for k in ("validation", "unexpectedmodelbehavior", "modelbehavior", "invalid json", "output")):
        return FailureCause.VALIDATION_FAILURE.value
    return FailureCause.ERROR.value


class Subtree:
    """An ended span and its ended descendants, indexed for the walk (order does not matter:
    everything derived from it is a count)."""

    def __init__(self, spans: Sequence[SpanSummary]) -> None:
        self.by_id = {s.span_id: s for s in spans}
        self.children: dict[int, list[SpanSummary]] = {}
        for s in spans:
            if s.parent_id is not None and s.parent_id in self.by_id:
                self.children.setdefault(s.parent_id, []).append(s)

    def roots(self) -> list[SpanSummary]:
        by_id = self.by_id
        return [s for s in by_id.values() if s.parent_id not in by_id]

    def walk(self, span: SpanSummary) -> Iterable[SpanSummary]:
        """`span` and its descendants, parents before children."""
        children = self.children
        stack = [span]
        while stack:
            s = stack.pop()
            yield s
            kids = children.get(s.span_id)
            if kids:
                stack.extend(kids)


def assemble(
    spans: Sequence[SpanSummary],
    *,
    trace_id: str | None,
    exemplar: Mapping[str, str] | None,
    natives: Mapping[int, Native] | None = None,
    task: Mapping[int, tuple[str | None, str | None]] | None = None,
    version: str | None = None,
    prices: Prices | None = None,
) -> list[Event]:
    """The events of a finished subtree of one trace.

    `natives` maps the library's own execution/step span ids to their identity, so framework
    spans under them fill the native execution instead of counting a new one; `task` maps span
    ids to (trigger, task id) given by `exporter.task()` when the span started; `version` is the
    agent version of executions whose span carries no `gen_ai.agent.version` (the process default);
    `prices` prices model usage (None: cost off).
    """
    tree = Subtree(spans)
    out: list[Event] = []
    for root in tree.roots():
        _visit(tree, root, None, out, trace_id, exemplar, natives or {}, task or {}, version, prices)
    return out


def _visit(
    tree: Subtree,
    span: SpanSummary,
    native: Native | None,
    out: list[Event],
    trace_id: str | None,
    exemplar: Mapping[str, str] | None,
    natives: Mapping[int, Native],
    task: Mapping[int, tuple[str | None, str | None]],
    version: str | None,
    prices: Prices | None = None,
) -> None:
    """Find executions (framework agent spans, or native ones) from `span` down."""
    found = natives.get(span.span_id)
    if span.role in (NATIVE_EXECUTION, NATIVE_STEP):
        native = found or native
    elif found is not None or native is not None:
        # Framework spans inside a native execution: its steps, tools and tokens, no new execution.
        inside = found or native
        assert inside is not None
        _contents(tree, span, inside.ref, inside.step, out, prices)
        return
    elif span.role in (AGENT, CHAIN):
        _execution(tree, span, out, trace_id, exemplar, task, version, prices)
        return
    for child in tree.children.get(span.span_id, ()):
        _visit(tree, child, native, out, trace_id, exemplar, natives, task, version, prices)


def _execution(
    tree: Subtree,
    root: SpanSummary,
    out: list[Event],
    trace_id: str | None,
    exemplar: Mapping[str, str] | None,
    task: Mapping[int, tuple[str | None, str | None]],
    version: str | None,
    prices: Prices | None = None,
) -> None:
    given = task.get(root.span_id, (None, None))
    span_hex = format(root.span_id, "016x")
    trigger = given[0] or root.trigger or sc.UNKNOWN_LABEL_VALUE
    task_id = given[1] or root.task_id or span_hex
    agent = root.agent or _agent_below(tree, root) or agent_label(root.name)
    ref = ExecutionRef(agent, trigger, task_id, trace_id, span_hex, exemplar, root.version or version)
    out.append(ExecutionStarted(ref))
    found = _contents(tree, root, ref, None, out, prices)
    runtime = max(0.0, (root.end_ns - root.start_ns) / 1e9)
    waiting = root.waiting or found.waiting
    if waiting is not None and not root.error:
        # Stopped for a human: the execution waits (spans.waits parks it), nothing is finished.
        out.append(ExecutionSuspended(ref, waiting, root.end_ns / 1e9, None, runtime))
        return
    status, cause, message = sc.ExecutionStatus.COMPLETED.value, None, None
    failed = root if root.error else found.failed
    if failed is not None:
        status = sc.ExecutionStatus.FAILED.value
        origin = _origin(tree, failed)
        cause = FailureCause.TOOL_ERROR.value if origin.role == TOOL else _cause(origin.error or "")
        message = (failed.error or "")[:1000] or None
    scores = found.scores
    score = sum(scores) / len(scores) if scores else None
    cost = None if prices is None or (found.unpriced and not found.priced) else found.cost
    out.append(ExecutionFinished(ref, status, cause, runtime, score, message, None, cost))


_LABEL_SUFFIXES = (".run",)  # smolagents names its root `{agent}.run`


def agent_label(name: str) -> str:
    """The agent label of an execution whose spans carry no agent name: its span's name less a GenAI
    operation prefix (`invoke_agent X` -> `X`) or a known suffix (`X.run` -> `X`); `unknown` for a bare
    operation name (`invoke_agent`, the AI SDK's `ai.generateText`) or when nothing is left."""
    head, _, rest = name.strip().partition(" ")
    name = rest.strip() if head in _AGENT_OPS else name.strip()
    for suffix in _LABEL_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return sc.UNKNOWN_LABEL_VALUE if not name or name in _AI_RUNS else name


def _agent_below(tree: Subtree, root: SpanSummary) -> str | None:
    """The first agent name on an agent or chain span below the execution's (OpenAI Agents SDK)."""
    for s in tree.walk(root):
        if s.agent and s.role in (AGENT, CHAIN):
            return s.agent
    return None


def _origin(tree: Subtree, span: SpanSummary) -> SpanSummary:
    """Follow errored children down from a failed span (a tool first): where the failure began."""
    children = tree.children
    while True:
        errored = [c for c in children.get(span.span_id, ()) if c.error]
        if not errored:
            return span
        span = next((c for c in errored if c.role == TOOL), errored[-1])


def _recovered(tree: Subtree, span: SpanSummary) -> bool:
    """The run went on past an errored agent / chain / node span: a later sibling of the same role
    ended OK (smolagents: `Step 1` ERROR from a tool that raised, then `Step 2` answers). The OpenAI
    Agents SDK's failing `turn` or agent span is the run's last: still a failure."""
    if span.parent_id is None:
        return False
    siblings = tree.children.get(span.parent_id, ())
    return any(c.role == span.role and not c.error and c.start_ns >= span.end_ns for c in siblings)


class _Found(NamedTuple):
    scores: list[float]
    failed: SpanSummary | None  # an errored agent / chain / node span below `top`
    waiting: str | None  # a span below `top` says the run stopped to wait (a LangGraph interrupt)
    cost: float = 0.0  # USD of the priced model usage
    priced: bool = False  # some usage was priced
    unpriced: bool = False  # some usage had no price


def _llm_outcome(error: str | None) -> str:
    """A model-call span's outcome from its error (type or description), as `errors.llm_outcome_of`."""
    if error is None:
        return LlmOutcome.SUCCESS.value
    e = error.lower()
    if any(w in e for w in ("ratelimit", "rate limit", "rate_limit", "429", "too many requests")):
        return LlmOutcome.RATE_LIMITED.value
    if "timeout" in e or "timed out" in e:
        return LlmOutcome.TIMEOUT.value
    return LlmOutcome.ERROR.value


def _usage(r: ExecutionRef, step: str, s: SpanSummary, prices: Prices | None) -> TokensUsed:
    """One inference span's usage, priced. Its input includes the cache parts (GenAI, OpenInference)."""
    tin, tout = s.tokens_in, s.tokens_out
    if s.cache_read + s.cache_write > tin:  # input reported without the cache: not the conventions', taken as such
        tin += s.cache_read + s.cache_write
    if s.reasoning > tout:
        tout += s.reasoning
    cost = None
    provider = s.provider
    unpriced = False
    if prices is not None:
        price = prices.price(provider, s.model)
        if price is None:
            unpriced = True
        else:
            cost = price.cost(tin, tout, s.cache_read, s.cache_write)
            provider = provider or price.provider
    return TokensUsed(r, step, tin, tout, s.cache_read, s.cache_write, s.reasoning, provider, s.model, cost, unpriced)


def _contents(
    tree: Subtree,
    top: SpanSummary,
    r: ExecutionRef,
    native_step: str | None,
    out: list[Event],
    prices: Prices | None = None,
) -> _Found:
    """Steps, tool calls, tokens, model calls and evaluations at and below `top`, in one walk."""
    cost = 0.0
    priced = unpriced = False
    scores: list[float] = []
    failed: SpanSummary | None = None
    waiting: str | None = None
    spans = list(tree.walk(top))
    step_of: dict[int, str | None] = {}  # span id -> the step it belongs to
    has_nodes = any(s.role == NODE for s in spans)
    for s in spans:
        role = s.role
        parent_step = step_of.get(s.parent_id) if s.parent_id is not None else None
        step = parent_step or native_step
        if native_step is None and parent_step is None and (role == NODE or (role == LLM and not has_nodes)):
            step = s.name
            if s.waiting is None:  # a node stopped by an interrupt did not finish: it runs again on resume
                status = sc.StepStatus.FAILED.value if s.error else sc.StepStatus.PASSED.value
                out.append(StepFinished(r, s.name, status, max(0.0, (s.end_ns - s.start_ns) / 1e9)))
        step_of[s.span_id] = step
        if role == TOOL and s.tool:
            outcome = ToolOutcome.SUCCESS.value
            if s.error:
                outcome = ToolOutcome.TIMEOUT.value if "timeout" in s.error.lower() else ToolOutcome.ERROR.value
            out.append(ToolCallFinished(r, s.tool, outcome, max(0.0, (s.end_ns - s.start_ns) / 1e9)))
        elif role == LLM:
            provider = s.provider
            if provider is None and prices is not None:  # the price list's provider for the model, if any
                price = prices.price(None, s.model)
                provider = price.provider if price is not None else None
            if s.tokens_in or s.tokens_out:
                used = _usage(r, step or s.name, s, prices)
                out.append(used)
                provider = used.provider
                if used.cost is not None:
                    cost += used.cost
                    priced = True
                unpriced = unpriced or used.unpriced
            dur = max(0.0, (s.end_ns - s.start_ns) / 1e9)
            out.append(LlmCallFinished(r, provider, s.model, _llm_outcome(s.error), dur))
        elif failed is None and s.error and role in _STRUCTURE and s is not top and not _recovered(tree, s):
            failed = s
        if s.waiting is not None and waiting is None:
            waiting = s.waiting
        for name, value, label in s.evaluations:
            result = label if label in ("pass", "fail") else None
            out.append(EvaluationRecorded(r, step or "execution", name, result, value))
            if value is not None:
                scores.append(value)
    return _Found(scores, failed, waiting, cost, priced, unpriced)
