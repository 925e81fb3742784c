"""Execution-level sampling (`configure(sample_healthy=)`): the keep rules, whole-or-nothing traces,
determinism across processes, bounded memory, exemplars only to exported traces, exact metrics."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import exporter
from exporter import semconv as sc
from exporter.testing import Capture, capture
from exporter.traces.sampling import SamplingSpanProcessor, keeps_healthy, ratio_bound

KEEP = 1  # a trace id whose low 64 bits are below any ratio > 0: kept when healthy
DROP = (1 << 64) - 1  # low 64 bits at the top: dropped when healthy at any ratio < 1


@contextmanager
def in_trace(trace_id: int) -> Iterator[None]:
    """Run the block under a remote, sampled parent with this trace id (as a propagated request)."""
    ctx = SpanContext(trace_id, 0xABC, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))
    try:
        yield
    finally:
        otel_context.detach(token)


def reasons(cap: Capture) -> list[Any]:
    return [s.attributes.get(sc.ATTR_TASK_SAMPLING_REASON) for s in cap.spans() if s.name.startswith("invoke_")]


def decisions(cap: Capture, decision: str, reason: str) -> float:
    return cap.value("agent_exporter_sampling_decisions_total", decision=decision, reason=reason)


def _healthy(run: Any) -> None:
    with run.step("plan") as s, s.tool_call("search"):
        pass


def _raise(run: Any) -> None:
    raise ValueError("boom")


def _timeout(run: Any) -> None:
    run.fail(sc.FailureCause.TIMEOUT)


def _cancel(run: Any) -> None:
    run.cancel()


def _step_failed(run: Any) -> None:
    try:
        with run.step("plan"):
            raise KeyError("x")
    except KeyError:
        pass  # the agent recovered: the execution completes, a step failed


def _needs_review(run: Any) -> None:
    with run.step("plan") as s:
        s.flag_for_review("odd")


def _evaluation_failed(run: Any) -> None:
    with run.step("plan") as s:
        s.evaluate("accuracy", passed=False)


def _slow(run: Any) -> None:
    with run.step("plan"):
        time.sleep(0.02)  # over the agent's 0.01 s max_runtime_seconds objective


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_raise, "failed"),
        (_timeout, "timeout"),
        (_cancel, "cancelled"),
        (_step_failed, "step_failed"),
        (_needs_review, "needs_review"),
        (_evaluation_failed, "evaluation_failed"),
        (_slow, "slow"),
    ],
)
def test_each_keep_rule_keeps_the_whole_trace_and_says_why(body: Callable[[Any], None], reason: str) -> None:
    """An execution matching a keep rule is exported whole, with task.sampling.reason, at sample_healthy=0."""
    with capture(sample_healthy=0.0, objectives={"a": {"max_runtime_seconds": 0.01}}) as cap:
        with in_trace(DROP), pytest.raises(ValueError) if body is _raise else _nothing():
            with exporter.execution("a") as run:
                _healthy(run)
                body(run)
        assert reasons(cap) == [reason]
        assert {s.context.trace_id for s in cap.spans()} == {DROP}
        assert len(cap.spans()) >= 3  # the execution and its steps and tool call, not the execution alone
        assert decisions(cap, "kept", reason) == 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_a_healthy_execution_outside_the_fraction_is_not_exported_at_all() -> None:
    """A healthy execution whose trace id is outside the fraction exports no span, and is counted."""
    with capture(sample_healthy=0.5) as cap:
        with in_trace(DROP), exporter.execution("a") as run:
            _healthy(run)
        assert cap.spans() == []
        assert decisions(cap, "dropped", "healthy") == 1


def test_a_healthy_execution_inside_the_fraction_is_exported_whole() -> None:
    """A healthy execution whose trace id is inside the fraction is exported, reason `sampled`."""
    with capture(sample_healthy=0.5) as cap:
        with in_trace(KEEP), exporter.execution("a") as run:
            _healthy(run)
        assert len(cap.spans()) == 3 and reasons(cap) == ["sampled"]


def test_default_keeps_everything_without_a_reason_attribute() -> None:
    """sample_healthy=1 (the default) holds nothing, keeps every trace, counts it as keep_all."""
    with capture() as cap:
        with in_trace(DROP), exporter.execution("a") as run:
            _healthy(run)
        assert len(cap.spans()) == 3 and reasons(cap) == [None]
        assert cap.total("agent_exporter_sampling_decisions_total") == decisions(cap, "kept", "keep_all") == 1


def test_the_healthy_fraction_is_close_to_the_ratio() -> None:
    """Over many random trace ids, the kept fraction of healthy ones is the configured ratio."""
    rng = random.Random(15)
    bound = ratio_bound(0.1)
    kept = sum(keeps_healthy(rng.getrandbits(128), bound) for _ in range(20_000))
    assert 0.09 < kept / 20_000 < 0.11
    assert not keeps_healthy(DROP, ratio_bound(0.999)) and keeps_healthy(KEEP, ratio_bound(0.001))
    assert keeps_healthy(DROP, ratio_bound(1.0)) and not keeps_healthy(0, ratio_bound(0.0))


_CHILD = """
import json, sys
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import exporter
mem = InMemorySpanExporter()
exporter.configure(metrics_port=None, span_exporter=mem, sample_healthy=0.3)
for tid in json.loads(sys.argv[1]):
    ctx = SpanContext(tid, 1, is_remote=True, trace_flags=TraceFlags(1))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))
    with exporter.execution("a") as run:
        with run.step("s"):
            pass
    context.detach(token)
exporter.flush(5)
print(json.dumps(sorted({s.context.trace_id for s in mem.get_finished_spans()})))
"""


def test_two_processes_decide_the_same_way_for_the_same_trace_ids() -> None:
    """Two processes (different hash seeds) running executions in the same traces keep the same ones."""
    rng = random.Random(7)
    ids = [rng.getrandbits(128) | 1 for _ in range(200)]
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(ids)], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert 30 < len(outputs[0]) < 90  # about 30% of 200
    assert outputs[0] == sorted(t for t in ids if keeps_healthy(t, ratio_bound(0.3)))


def test_a_suspended_and_resumed_execution_is_kept_whole() -> None:
    """Both parts of a suspended execution are exported (healthy or not), so the trace is whole."""
    with capture(sample_healthy=0.0) as first:
        with in_trace(DROP), exporter.execution("a") as run:
            _healthy(run)
            carrier = run.suspend()
        part_one = first.spans()
    with capture(sample_healthy=0.0) as second:  # the resuming process
        with exporter.resume_execution(carrier) as run:
            _healthy(run)
        part_two = second.spans()
        assert decisions(second, "kept", "suspended") == 1
    assert len(part_one) == 3 and len(part_two) == 3
    assert {s.context.trace_id for s in part_one + part_two} == {DROP}
    assert [
        s.attributes.get(sc.ATTR_TASK_SAMPLING_REASON) for s in part_one + part_two if s.name.startswith("invoke_")
    ] == [
        "suspended",
        "suspended",
    ]


def test_a_failure_in_a_nested_execution_keeps_the_whole_trace() -> None:
    """Two executions in one trace: the trace is kept if either is, including the healthy one's spans."""
    with capture(sample_healthy=0.0) as cap:
        with in_trace(DROP), exporter.execution("outer") as outer:
            _healthy(outer)
            with pytest.raises(ValueError), exporter.execution("inner"):
                raise ValueError("x")
        names = sorted(s.name for s in cap.spans())
        assert names == ["execute_tool search", "invoke_workflow inner", "invoke_workflow outer", "plan"]


def test_the_app_spans_of_a_dropped_trace_are_dropped_with_it() -> None:
    """An application's spans inside the execution, and its parent span ending after, follow the decision."""
    with capture(sample_healthy=0.0) as cap:
        tracer = cap.state.tracing.provider.get_tracer("app")
        with in_trace(DROP), tracer.start_as_current_span("request"):
            with exporter.execution("a"), tracer.start_as_current_span("app work"):
                pass
        assert cap.spans() == []


def test_with_the_apps_provider_and_no_wrapper_every_trace_is_kept_and_a_warning_says_so(caplog: Any) -> None:
    """sample_healthy with an app provider whose export is not wrapped keeps all, and warns once."""
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    state = exporter.configure(metrics_port=None, tracer_provider=provider, sample_healthy=0.0)
    with in_trace(DROP), exporter.execution("a") as run:
        _healthy(run)
    assert len(mem.get_finished_spans()) == 3
    assert "SamplingSpanProcessor" in caplog.text
    counted = state.metrics.registry.get_sample_value
    assert counted("agent_exporter_sampling_decisions_total", {"decision": "dropped", "reason": "healthy"}) is None
    assert counted("agent_exporter_sampling_decisions_total", {"decision": "kept", "reason": "keep_all"}) == 1


def test_a_trace_the_head_sampler_dropped_stays_dropped_and_has_no_exemplar() -> None:
    """A failed execution in a trace the app's head sampler dropped exports nothing and links no exemplar."""
    mem = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SamplingSpanProcessor(SimpleSpanProcessor(mem)))
    state = exporter.configure(metrics_port=None, tracer_provider=provider, sample_healthy=0.1)
    with pytest.raises(ValueError), exporter.execution("a") as run:
        assert run.exemplar is None
        raise ValueError("x")
    assert mem.get_finished_spans() == ()
    reg = state.metrics.registry
    assert (
        reg.get_sample_value(
            "agent_exporter_sampling_decisions_total", {"decision": "dropped", "reason": "head_sampler"}
        )
        == 1
    )


def test_an_unsampled_trace_gets_no_exemplar_even_with_sampling_off() -> None:
    """Keep-all default: an execution whose span the head sampler dropped has no exemplar (was: one)."""
    provider = TracerProvider(sampler=ALWAYS_OFF)
    exporter.configure(metrics_port=None, tracer_provider=provider)
    with exporter.execution("a") as run:
        assert run.trace_id is not None
        assert run.exemplar is None and run.ref.exemplar is None


class _Counting(SpanProcessor):
    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


_NO_RESOURCE = Resource.get_empty()  # ReadableSpan() without one builds a default: ~1 ms per span


def _span(trace_id: int, n: int) -> ReadableSpan:
    ctx = SpanContext(trace_id, n + 1, False, TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(name="s", context=ctx, resource=_NO_RESOURCE)


def test_memory_stays_bounded_with_100k_spans_held() -> None:
    """100,000 spans offered to open executions: held never passes the cap, overflow goes out, none lost."""
    inner = _Counting()
    holder = SamplingSpanProcessor(inner, max_held=20_000, max_held_per_trace=2_000)
    traces = list(range(1, 201))
    for t in traces:
        holder.hold(t)
    peak = 0
    for i in range(100_000):
        holder.on_end(_span(traces[i % 200], i))
        peak = max(peak, holder.held)
    assert peak <= 20_000
    assert holder.overflowed > 0 and inner.ended >= holder.overflowed
    for t in traces:
        holder.release(t, keep=False)
    assert holder.held == 0
    assert inner.ended + holder.discarded == 100_000
    holder.shutdown()


def test_a_trace_over_its_cap_is_exported_early_and_counted() -> None:
    """A trace over the per-trace cap goes out at once (kept, never lost) and counts sampling_overflow."""
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    holder = SamplingSpanProcessor(SimpleSpanProcessor(mem), max_held_per_trace=5)
    provider.add_span_processor(holder)
    state = exporter.configure(metrics_port=None, tracer_provider=provider, sample_healthy=0.0)
    with in_trace(DROP), exporter.execution("a") as run:
        for i in range(10):
            with run.step(f"s{i}"):
                pass
    # over the cap the trace went out without waiting (5 held released, the rest passing): kept, not lost
    assert len(mem.get_finished_spans()) == 11
    assert state.metrics.registry.get_sample_value("agent_exporter_dropped_total", {"reason": "sampling_overflow"}) == 5
    assert holder.held == 0
    provider.shutdown()


def test_held_spans_do_not_depend_on_the_backend() -> None:
    """With an exporter that always fails, nothing stays held once the executions end."""

    class Failing(InMemorySpanExporter):
        def export(self, spans: Any) -> Any:
            raise ConnectionError("backend down")

    state = exporter.configure(metrics_port=None, span_exporter=Failing(), sample_healthy=0.1)
    for i in range(200):
        with in_trace(i + 1), exporter.execution("a") as run:
            _healthy(run)
    holders = [h for h in exporter.traces.sampling.holders() if not h._stopped]
    assert holders and all(h.held == 0 for h in holders)
    assert state.tracing.processor is not None


def _workload(n: int) -> None:
    for i in range(n):
        with in_trace(random.Random(i).getrandbits(128) | 1):
            try:
                with exporter.execution("a", trigger="api") as run:
                    with run.step("plan") as s:
                        s.record_usage(10, 5)
                        s.evaluate("accuracy", score=0.5 if i % 7 == 0 else 0.95)
                        with s.tool_call("search"):
                            pass
                    if i % 11 == 0:
                        raise ValueError("x")
            except ValueError:
                pass


def _counts(cap: Capture) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in cap.registry.collect():
        for s in family.samples:
            if s.name.startswith("agent_exporter_sampling") or s.name.endswith(("_sum", "_bucket", "_created")):
                continue
            if family.type == "gauge" and s.name.startswith("agent_execution_pending_oldest"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_are_exact_whatever_is_sampled() -> None:
    """The same workload gives the same counters and histogram counts with sample_healthy 1 and 0."""
    with capture() as keep_all:
        _workload(60)
        expected = _counts(keep_all)
    with capture(sample_healthy=0.0) as sampled:
        _workload(60)
        got = _counts(sampled)
        assert sampled.total("agent_exporter_sampling_decisions_total") == 60
    assert got == expected
    assert expected[("agent_executions_started_total", (("agent", "a"), ("trigger", "api")))] == 60


def _exemplar_trace_ids(cap: Capture) -> set[str]:
    ids = set()
    for family in cap.registry.collect():
        for s in family.samples:
            if s.exemplar is not None:
                ids.add(s.exemplar.labels[sc.EXEMPLAR_TRACE_ID])
    return ids


def test_every_exemplar_names_an_exported_trace() -> None:
    """With sampling on, each exemplar in the registry is the trace id of an exported trace."""
    with capture(sample_healthy=0.2) as cap:
        _workload(200)
        exported = {format(s.context.trace_id, "032x") for s in cap.spans()}
        linked = _exemplar_trace_ids(cap)
    assert linked and linked <= exported, linked - exported
    assert len(exported) < 200  # some healthy traces really were dropped


@pytest.mark.servers
def test_every_exemplar_in_a_prometheus_scrape_is_at_the_receiver(prometheus_factory: Any, otlp_receiver: Any) -> None:
    """A real Prometheus scrapes exemplars; every trace id among them arrived at the OTLP receiver."""
    from tests.servers import free_port, wait_until

    port = free_port()
    exporter.configure(
        "sampled", metrics_port=port, metrics_addr="127.0.0.1", otlp_endpoint=otlp_receiver.endpoint, sample_healthy=0.2
    )
    t0 = time.time()
    _workload(300)
    assert exporter.flush(10)
    prom = prometheus_factory(
        {
            "global": {"scrape_interval": "1s"},
            "scrape_configs": [{"job_name": "agent-exporter", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }
    )
    stored: list[Any] = []

    def scraped() -> bool:
        stored[:] = prom.query_exemplars('{__name__=~"agent_.+"}', t0 - 60, time.time() + 60)
        return bool(stored)

    wait_until(scraped, 30)
    linked = {ex["labels"][sc.EXEMPLAR_TRACE_ID] for series in stored for ex in series["exemplars"]}
    received = {s.trace_id for s in otlp_receiver.spans()}
    assert linked and linked <= received, linked - received
    assert len(received) < 300


def test_a_framework_run_in_a_dropped_trace_links_no_exemplar() -> None:
    """The span bridge gives no exemplar to a framework run in a trace the sampler already dropped."""
    from tests.test_bridge import _agent_run

    with capture(span_metrics=True, sample_healthy=0.0) as cap:
        with in_trace(DROP):
            with exporter.execution("a") as run:
                _healthy(run)
            _agent_run(cap.state.tracing.provider)  # after the execution ended: its trace is dropped
        assert cap.value("agent_executions_started_total", agent="weather", trigger="unknown") == 1
        assert cap.spans() == []
        assert format(DROP, "032x") not in _exemplar_trace_ids(cap)


def test_a_span_the_holder_cannot_read_passes_through_without_raising() -> None:
    """A span whose context cannot be read is exported as usual, never raised into the application."""

    class Broken:
        @property
        def context(self) -> Any:
            raise RuntimeError("unreadable")

    inner = _Counting()
    holder = SamplingSpanProcessor(inner)
    holder.hold(1)
    holder.on_end(Broken())  # type: ignore[arg-type]
    assert inner.ended == 1
    holder.shutdown()
