"""The three variants of one execution: no instrumentation, hand-written bare SDK, this library.

The hand-written variant is what a careful user would write with the OpenTelemetry SDK and
prometheus_client directly: the same span tree (execution → 6 steps → one tool call each), the
same attributes and evaluation events, the same metric families with the same labels, buckets and
`trace_id` exemplars, a BatchSpanProcessor and an OTLP/HTTP exporter. It calls `.labels()` on each
use, as the prometheus_client documentation does; it does no secret masking of captured content.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import exporter
from exporter import semconv as sc
from exporter.traces.export import DEFAULT_SHUTDOWN_TIMEOUT

from .shape import AGENT, EVALUATION, MIN_SCORE, SCORE, STEP_INPUT, STEP_OUTPUT, STEPS, TOKENS_IN, TOKENS_OUT, TRIGGER

VERSION = sc.UNKNOWN_LABEL_VALUE  # the version label of an execution that names none


def _agent_work() -> None:
    """The agent's own work in a tool call: none, so that only overhead is measured."""


# --------------------------------------------------------------------------- no instrumentation


def run_none(task_id: str, capture: bool = False) -> None:
    """The same control flow with no telemetry at all."""
    for _name, _tool in STEPS:
        _agent_work()


# --------------------------------------------------------------------------- this library


def run_library(task_id: str, capture: bool = False) -> None:
    """One execution through agent-exporter's public API."""
    with exporter.execution(AGENT, trigger=TRIGGER, task_id=task_id) as run:
        for name, tool in STEPS:
            with run.step(name, tool=tool) as step:
                if capture:
                    step.record_input(STEP_INPUT)
                with step.tool_call(tool):
                    _agent_work()
                step.evaluate(EVALUATION, score=SCORE)
                step.record_usage(input_tokens=TOKENS_IN, output_tokens=TOKENS_OUT)
                if capture:
                    step.record_output(STEP_OUTPUT)


async def run_library_async(task_id: str, capture: bool = False) -> None:
    """The same with `async with` (steps and tool calls yield to the event loop once each)."""
    import asyncio

    async with exporter.execution(AGENT, trigger=TRIGGER, task_id=task_id) as run:
        for name, tool in STEPS:
            async with run.step(name, tool=tool) as step:
                async with step.tool_call(tool):
                    await asyncio.sleep(0)
                step.evaluate(EVALUATION, score=SCORE)
                step.record_usage(input_tokens=TOKENS_IN, output_tokens=TOKENS_OUT)


# --------------------------------------------------------------------------- hand-written, bare SDK


def _family(spec: sc.MetricSpec, registry: CollectorRegistry) -> Any:
    if spec.type == "counter":
        return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)
    if spec.type == "histogram":
        return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets or ())
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


class HandWritten:
    """The same telemetry written by hand against the OpenTelemetry SDK and prometheus_client."""

    def __init__(self, endpoint: str | None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench-handwritten"}))
        self.processor: BatchSpanProcessor | None = None
        if endpoint:
            self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
            self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("handwritten")
        r = self.registry
        self.started = _family(sc.EXECUTIONS_STARTED, r)
        self.finished = _family(sc.EXECUTIONS_FINISHED, r)
        self.duration = _family(sc.EXECUTION_DURATION, r)
        self.exec_score = _family(sc.EXECUTION_EVALUATION_SCORE, r)
        self.in_progress = _family(sc.EXECUTIONS_IN_PROGRESS, r)
        self.steps = _family(sc.STEPS, r)
        self.step_duration = _family(sc.STEP_DURATION, r)
        self.step_score = _family(sc.STEP_EVALUATION_SCORE, r)
        self.evaluations = _family(sc.EVALUATIONS, r)
        self.tool_calls = _family(sc.TOOL_CALLS, r)
        self.tool_duration = _family(sc.TOOL_CALL_DURATION, r)
        self.tokens = _family(sc.TOKENS, r)
        # the per-version series the library also records (version `unknown`: the shape names none)
        self.info = _family(sc.AGENT_INFO, r)
        self.v_finished = _family(sc.VERSION_EXECUTIONS_FINISHED, r)
        self.v_duration = _family(sc.VERSION_EXECUTION_DURATION, r)
        self.v_score = _family(sc.VERSION_EXECUTION_EVALUATION_SCORE, r)
        self.v_tool_calls = _family(sc.VERSION_TOOL_CALLS, r)
        self.v_tokens = _family(sc.VERSION_TOKENS, r)
        objective = _family(sc.OBJECTIVE, r)
        for name, value in sc.DEFAULT_OBJECTIVES.items():
            objective.labels(AGENT, name).set(value)
        self._call_ids = itertools.count(1)

    def flush(self) -> None:
        if self.processor is not None:
            self.processor.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()

    def run(self, task_id: str, capture: bool = False) -> None:
        tracer = self.tracer
        with tracer.start_as_current_span(
            f"invoke_workflow {AGENT}",
            attributes={
                sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_WORKFLOW,
                sc.ATTR_GEN_AI_WORKFLOW_NAME: AGENT,
                sc.ATTR_GEN_AI_AGENT_NAME: AGENT,
                sc.ATTR_TASK_ID: task_id,
                sc.ATTR_TASK_TRIGGER: TRIGGER,
            },
        ) as span:
            exemplar = {"trace_id": format(span.get_span_context().trace_id, "032x")}
            self.started.labels(AGENT, TRIGGER).inc()
            self.info.labels(AGENT, VERSION).set(1)
            self.in_progress.labels(AGENT).inc()
            t0 = time.perf_counter()
            tokens_in = tokens_out = 0
            score_sum = 0.0
            for index, (name, tool) in enumerate(STEPS, 1):
                with tracer.start_as_current_span(
                    name,
                    attributes={sc.ATTR_STEP_NAME: name, sc.ATTR_STEP_INDEX: index, sc.ATTR_GEN_AI_TOOL_NAME: tool},
                ) as step:
                    ts = time.perf_counter()
                    attrs: dict[str, Any] = {}
                    if capture:
                        attrs[sc.ATTR_STEP_INPUT] = json.dumps(STEP_INPUT, default=repr)[:4096]
                    with tracer.start_as_current_span(
                        f"execute_tool {tool}",
                        attributes={
                            sc.ATTR_GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
                            sc.ATTR_GEN_AI_TOOL_NAME: tool,
                            sc.ATTR_GEN_AI_TOOL_CALL_ID: f"call_{next(self._call_ids)}",
                        },
                    ):
                        tt = time.perf_counter()
                        _agent_work()
                        self.tool_calls.labels(AGENT, tool, "success").inc()
                        self.v_tool_calls.labels(AGENT, VERSION, "success").inc()
                        self.tool_duration.labels(AGENT, tool).observe(time.perf_counter() - tt, exemplar)
                    result = "pass" if SCORE >= MIN_SCORE else "fail"
                    step.add_event(
                        sc.EVENT_EVALUATION,
                        {
                            sc.ATTR_EVALUATION_NAME: EVALUATION,
                            sc.ATTR_EVALUATION_SCORE_LABEL: result,
                            sc.ATTR_EVALUATION_SCORE_VALUE: SCORE,
                        },
                    )
                    self.evaluations.labels(AGENT, name, EVALUATION, result).inc()
                    self.step_score.labels(AGENT, name).observe(SCORE, exemplar)
                    score_sum += SCORE
                    self.tokens.labels(AGENT, name, "input").inc(TOKENS_IN)
                    self.tokens.labels(AGENT, name, "output").inc(TOKENS_OUT)
                    self.v_tokens.labels(AGENT, VERSION, "input").inc(TOKENS_IN)
                    self.v_tokens.labels(AGENT, VERSION, "output").inc(TOKENS_OUT)
                    tokens_in += TOKENS_IN
                    tokens_out += TOKENS_OUT
                    if capture:
                        attrs[sc.ATTR_STEP_OUTPUT] = json.dumps(STEP_OUTPUT, default=repr)[:4096]
                    attrs[sc.ATTR_STEP_STATUS] = "passed"
                    attrs[sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS] = TOKENS_IN
                    attrs[sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = TOKENS_OUT
                    step.set_attributes(attrs)
                    self.steps.labels(AGENT, name, "passed").inc()
                    self.step_duration.labels(AGENT, name).observe(time.perf_counter() - ts, exemplar)
            runtime = time.perf_counter() - t0
            mean = score_sum / len(STEPS)
            self.finished.labels(AGENT, TRIGGER, "completed").inc()
            self.duration.labels(AGENT, TRIGGER, "completed").observe(runtime, exemplar)
            self.exec_score.labels(AGENT, TRIGGER).observe(mean, exemplar)
            self.v_finished.labels(AGENT, VERSION, "completed").inc()
            self.v_duration.labels(AGENT, VERSION).observe(runtime, exemplar)
            self.v_score.labels(AGENT, VERSION).observe(mean, exemplar)
            self.in_progress.labels(AGENT).dec()
            span.set_attributes(
                {
                    sc.ATTR_TASK_STATUS: "completed",
                    sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS: tokens_in,
                    sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out,
                    sc.ATTR_TASK_EVALUATION_SCORE: mean,
                }
            )


# --------------------------------------------------------------------------- helpers


def configure_library(endpoint: str | None, **kw: Any) -> Any:
    """exporter.configure() as the benchmarks use it: no /metrics server, no global provider."""
    exporter.reset()
    options: dict[str, Any] = {
        "service_name": "bench-library",
        "metrics_port": None,
        "otlp_endpoint": endpoint,
        "capture_content": True,
        "log_level": "off",
        "set_global_tracer_provider": False,
        "shutdown_timeout": DEFAULT_SHUTDOWN_TIMEOUT,
        "tracing": True,
    }
    options.update(kw)
    return exporter.configure(**options)


def library_flush(state: Any, timeout_ms: int = 30000) -> None:
    proc = state.tracing.processor
    if proc is not None:
        proc.force_flush(timeout_ms)
