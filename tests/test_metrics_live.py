"""Acceptance 2 and 3: the library's /metrics as scraped over real HTTP, and by a real Prometheus.

A scripted workload (several agents, every trigger, every failure cause, cancellations, a queued
execution, a suspended-and-resumed one, tool errors and timeouts, tokens, evaluation scores under
several criteria, branch decisions, two agent versions: the process default and one given per
execution) runs against the library; the expected totals are computed from the script
itself, never written down by hand, and compared with what a scrape (or Prometheus) reports.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import exporter
from exporter import semconv as sc
from exporter.testing import fresh_registry
from tests.servers import PrometheusServer, free_port, require_binary

OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"
AGENTS = ("invoice", "support", "triage")
TRIGGERS = tuple(t.value for t in sc.Trigger)
MIN_SCORE = sc.DEFAULT_OBJECTIVES[sc.OBJECTIVE_MIN_EVALUATION_SCORE]
DEFAULT_VERSION = "v1"  # configure(agent_version=); plans with a version of their own say "v2"

# How an execution ends. "raise:<cause>" raises the matching exception out of the `with`;
# "fail:<cause>" calls run.fail(); "tool:<cause>" raises from inside a tool call (the step and
# the execution fail; tool outcome error / timeout); "max_duration" overruns max_duration.
ENDINGS = (
    "completed",
    "raise:validation_failure",
    "completed",
    "tool:tool_error",
    "raise:missing_data",
    "cancelled",
    "completed",
    "tool:timeout",
    "raise:error",
    "fail:missing_data",
    "completed",
    "max_duration",
    "fail:validation_failure",
    "completed",
    "suspend_resume",
)


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test configures the library itself and leaves it unconfigured."""
    exporter.reset()
    yield
    exporter.reset()


@dataclass(frozen=True)
class StepPlan:
    name: str
    tool: str | None = None
    calls: tuple[str, ...] = ()  # tool call outcomes that the step survives: success / error / timeout
    scores: tuple[float, ...] = ()
    tokens: tuple[int, int] = (0, 0)
    branch: tuple[str, tuple[str, ...]] | None = None
    review: bool = False


@dataclass(frozen=True)
class RunPlan:
    agent: str
    trigger: str
    task_id: str
    steps: tuple[StepPlan, ...]
    ending: str
    queued: bool = False
    version: str | None = None  # None: the process default (DEFAULT_VERSION)


@dataclass
class Expected:
    """Totals the workload must produce, derived from the plans."""

    started: Counter[tuple[str, ...]] = field(default_factory=Counter)
    finished: Counter[tuple[str, ...]] = field(default_factory=Counter)
    failures: Counter[tuple[str, ...]] = field(default_factory=Counter)
    steps: Counter[tuple[str, ...]] = field(default_factory=Counter)
    tool_calls: Counter[tuple[str, ...]] = field(default_factory=Counter)
    tokens: Counter[tuple[str, ...]] = field(default_factory=Counter)
    evaluations: Counter[tuple[str, ...]] = field(default_factory=Counter)
    step_score_count: Counter[tuple[str, ...]] = field(default_factory=Counter)
    step_score_sum: dict[tuple[str, ...], float] = field(default_factory=dict)
    exec_score_count: Counter[tuple[str, ...]] = field(default_factory=Counter)
    exec_score_sum: dict[tuple[str, ...], float] = field(default_factory=dict)
    branches: Counter[tuple[str, ...]] = field(default_factory=Counter)
    pending_count: Counter[tuple[str, ...]] = field(default_factory=Counter)
    version_finished: Counter[tuple[str, ...]] = field(default_factory=Counter)
    version_tool_calls: Counter[tuple[str, ...]] = field(default_factory=Counter)
    version_tokens: Counter[tuple[str, ...]] = field(default_factory=Counter)
    version_score_count: Counter[tuple[str, ...]] = field(default_factory=Counter)
    version_score_sum: dict[tuple[str, ...], float] = field(default_factory=dict)
    version_info: Counter[tuple[str, ...]] = field(default_factory=Counter)


def make_plans(round_no: int) -> list[RunPlan]:
    """One round: every agent x every trigger, the endings cycling so every cause occurs."""
    plans = []
    for i, (agent, trigger) in enumerate(itertools.product(AGENTS, TRIGGERS)):
        k = i + round_no
        steps = (
            StepPlan(
                "Extract",
                tool="custom_gpt",
                calls=("success",) if k % 3 else ("success", "error"),
                scores=(0.97, 0.80 + (k % 5) * 0.04),
                tokens=(100 + 10 * k, 20 + k),
            ),
            StepPlan(
                "Route",
                branch=("approve", ("reject", "escalate")) if k % 2 else ("escalate", ("approve", "reject")),
                review=k % 4 == 0,
            ),
            StepPlan(
                "Notify",
                tool="gmail",
                calls=("success", "timeout") if k % 5 == 0 else ("success",),
                scores=(0.5 + (k % 6) * 0.1,),
                tokens=(7, 3 * k),
            ),
        )
        plans.append(
            RunPlan(
                agent=agent,
                trigger=trigger,
                task_id=f"R{round_no}-{agent}-{trigger}",
                steps=steps,
                ending=ENDINGS[(i + 2 * round_no) % len(ENDINGS)],
                queued=k % 7 == 0,
                version="v2" if k % 3 == 0 else None,
            )
        )
    return plans


def _cause(ending: str) -> str | None:
    if ending == "max_duration":
        return "timeout"
    if ending.startswith(("raise:", "fail:", "tool:")):
        return ending.split(":", 1)[1]
    return None


def expected_of(plans: list[RunPlan]) -> Expected:
    """What the library must count for these plans (the contract's semantics, spelled out)."""
    e = Expected()
    for p in plans:
        cause = _cause(p.ending)
        status = "cancelled" if p.ending == "cancelled" else ("failed" if cause else "completed")
        version = p.version or DEFAULT_VERSION
        e.started[(p.agent, p.trigger)] += 1
        e.finished[(p.agent, p.trigger, status)] += 1
        e.version_finished[(p.agent, version, status)] += 1
        e.version_info[(p.agent, version)] = 1
        if cause:
            e.failures[(p.agent, p.trigger, cause)] += 1
        if p.queued:
            e.pending_count[(p.agent, "queued")] += 1
        if p.ending == "suspend_resume":
            e.pending_count[(p.agent, "approval")] += 1
        scores: list[float] = []
        for n, s in enumerate(p.steps, 1):
            last = n == len(p.steps)
            step_status = "passed"
            outcomes = list(s.calls)
            if last and p.ending.startswith("tool:"):  # the final step's tool call fails the execution
                outcomes.append("timeout" if cause == "timeout" else "error")
                step_status = "failed"
            for outcome in outcomes:
                e.tool_calls[(p.agent, s.tool or "", outcome)] += 1
                e.version_tool_calls[(p.agent, version, outcome)] += 1
            for n_score, v in enumerate(s.scores):
                result = "pass" if v >= MIN_SCORE else "fail"
                e.evaluations[(p.agent, s.name, f"criterion_{n_score}", result)] += 1
                e.step_score_count[(p.agent, s.name)] += 1
                e.step_score_sum[(p.agent, s.name)] = e.step_score_sum.get((p.agent, s.name), 0.0) + v
                if result == "fail":
                    step_status = "failed"
                scores.append(v)
            if s.review and step_status == "passed":
                step_status = "needs_review"
            e.steps[(p.agent, s.name, step_status)] += 1
            for kind, amount in zip(("input", "output"), s.tokens, strict=True):
                if amount:
                    e.tokens[(p.agent, s.name, kind)] += amount
                    e.version_tokens[(p.agent, version, kind)] += amount
            if s.branch:
                e.branches[(p.agent, s.name, s.branch[0])] += 1
        if scores:
            e.exec_score_count[(p.agent, p.trigger)] += 1
            key = (p.agent, p.trigger)
            e.exec_score_sum[key] = e.exec_score_sum.get(key, 0.0) + sum(scores) / len(scores)
            vkey = (p.agent, version)
            e.version_score_count[vkey] += 1
            e.version_score_sum[vkey] = e.version_score_sum.get(vkey, 0.0) + sum(scores) / len(scores)
    return e


class _Boom(Exception):
    """An exception with no cause of its own: maps to `error`."""


_RAISE = {
    "validation_failure": exporter.ValidationFailure,
    "missing_data": exporter.MissingData,
    "tool_error": exporter.ToolError,
    "timeout": TimeoutError,
    "error": _Boom,
}


def _run_step(run: Any, s: StepPlan, fail_tool: str | None) -> None:
    with run.step(s.name, tool=s.tool) as step:
        for outcome in s.calls:
            try:
                with step.tool_call(s.tool):
                    if outcome == "error":
                        raise exporter.ToolError("upstream 503")
                    if outcome == "timeout":
                        raise TimeoutError("no answer in 30 s")
            except (exporter.ToolError, TimeoutError):
                pass  # the agent retried / moved on: the step survives
        for n, v in enumerate(s.scores):
            step.evaluate(f"criterion_{n}", score=v, explanation=f"score {v}")
        if any(s.tokens):
            model = "gpt-4o" if s.tokens[0] >= 100 else "mystery-7b"  # priced, and one no price list knows
            with step.llm_call(model) as call:  # the cost and model families have samples
                call.record_usage(input_tokens=s.tokens[0], output_tokens=s.tokens[1])
        if s.branch:
            step.branch(selected=s.branch[0], not_selected=list(s.branch[1]), condition="amount > 1000", reason="rule")
        if s.review:
            step.flag_for_review("low confidence")
        if fail_tool is not None:
            with step.tool_call(s.tool):
                raise _RAISE[fail_tool](f"{s.tool} failed")


def run_plan(p: RunPlan, trace_ids: set[str]) -> None:
    """Execute one plan through the public API; collect every trace id it used."""
    cause = _cause(p.ending)
    kwargs: dict[str, Any] = {"pending": "queued" if p.queued else None}
    if p.ending == "max_duration":
        kwargs["max_duration"] = 0.05
    try:
        if p.version is not None:
            kwargs["version"] = p.version
        with exporter.execution(p.agent, trigger=p.trigger, task_id=p.task_id, description=p.ending, **kwargs) as run:
            assert run.trace_id, "the execution has no trace id"
            trace_ids.add(run.trace_id)
            steps = list(p.steps)
            if p.ending == "suspend_resume":  # one step here, the rest after "approval"
                _run_step(run, steps.pop(0), None)
                carrier = json.loads(json.dumps(run.suspend("approval")))
                steps, resumed = [], steps
            for n, s in enumerate(steps, 1):
                fail_tool = cause if p.ending.startswith("tool:") and n == len(steps) else None
                _run_step(run, s, fail_tool)
            if p.ending == "max_duration":
                time.sleep(0.1)  # over max_duration: failed with cause timeout
            elif p.ending == "cancelled":
                run.cancel()
            elif p.ending.startswith("fail:"):
                run.fail(cause, f"scripted {cause}")
            elif p.ending.startswith("raise:"):
                raise _RAISE[cause or "error"](f"scripted {cause}")
        if p.ending == "suspend_resume":  # the carrier keeps the version, whatever this process runs
            with exporter.resume_execution(carrier) as run2:
                assert run2.trace_id == run.trace_id
                for s in resumed:
                    _run_step(run2, s, None)
    except (exporter.ExecutionFailure, TimeoutError, _Boom):
        pass


def run_workload(rounds: int, pause: float = 0.0) -> tuple[list[RunPlan], set[str]]:
    """Run `rounds` rounds of plans (pausing between them); return the plans and trace ids."""
    plans: list[RunPlan] = []
    trace_ids: set[str] = set()
    for r in range(rounds):
        if r and pause:
            time.sleep(pause)
        for p in make_plans(r):
            run_plan(p, trace_ids)
            plans.append(p)
    # Sanity of the script itself: it covers what the acceptance asks for.
    assert {_cause(p.ending) for p in plans} - {None} == {c.value for c in sc.FailureCause}
    assert {p.trigger for p in plans} == set(TRIGGERS)
    assert any(p.queued for p in plans) and any(p.ending == "cancelled" for p in plans)
    assert {p.version for p in plans if p.ending == "suspend_resume"} >= ({None, "v2"} if rounds >= 3 else set())
    return plans, trace_ids


def _scrape(port: int, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        content_type = response.headers.get("Content-Type", "")
        body = response.read().decode()
    if accept:
        assert content_type.startswith("application/openmetrics-text"), content_type
    else:
        assert content_type.startswith("text/plain"), content_type
    return body


def _family_name(spec: sc.MetricSpec) -> str:
    """The family name the parsers report (counters lose `_total`)."""
    return spec.name.removesuffix("_total") if spec.type == "counter" else spec.name


def _check_families(families: list[Any], fmt: str) -> list[str]:
    """Problems with names, types and label names of every contract family in one parse."""
    problems: list[str] = []
    by_name = {f.name: f for f in families if f.name.startswith("agent_")}
    companions = {_family_name(s) + "_created" for s in sc.METRICS if s.type in ("counter", "histogram")}
    for spec in sc.METRICS:
        fam = by_name.get(_family_name(spec))
        if fam is None:
            problems.append(f"{fmt}: {spec.name} missing")
            continue
        if fam.type != spec.type:
            problems.append(f"{fmt}: {spec.name} has type {fam.type}, contract says {spec.type}")
        if not fam.samples:
            problems.append(f"{fmt}: {spec.name} has no samples")
        want = set(spec.labels)
        for sample in fam.samples:
            got = set(sample.labels)
            if sample.name == spec.name + "_bucket":
                ok = got == want | {"le"}
            else:
                ok = got == want
            allowed = {spec.name} if spec.type != "histogram" else set(sc.exposed_series_names(spec))
            allowed.add(_family_name(spec) + "_created")
            if not ok or sample.name not in allowed:
                problems.append(f"{fmt}: sample {sample.name}{sample.labels} does not match {spec}")
                break
    extra = set(by_name) - {_family_name(s) for s in sc.METRICS}
    if fmt == "text":  # prometheus_client writes `_created` as separate gauges in the text format
        extra -= companions
    if extra:
        problems.append(f"{fmt}: families outside the contract: {sorted(extra)}")
    return problems


@pytest.fixture
def live_library(tmp_path: Path) -> int:
    """The library configured with a real /metrics server on 127.0.0.1 and a task store (so its
    waiting gauges are in the contract's scrape too); returns its port."""
    port = free_port()
    exporter.configure(
        task_store=f"sqlite:///{tmp_path / 'tasks.db'}",
        service_name="metrics-live-test",
        metrics_port=port,
        metrics_addr="127.0.0.1",
        registry=fresh_registry(),
        set_global_tracer_provider=False,
        log_level="warning",
        agent_version=DEFAULT_VERSION,
    )
    return port


def _workload_with_gauges() -> tuple[list[RunPlan], set[str], Any]:
    """The workload plus one still-queued execution and one invalid score (a drop)."""
    plans, trace_ids = run_workload(rounds=1)
    waiting = exporter.start_execution("triage", trigger="timer", task_id="still-queued", pending="queued")
    with exporter.execution("support", trigger="api", task_id="bad-score") as run:
        trace_ids.add(run.trace_id)
        with run.step("Check") as step:
            step.evaluate("nan", score=float("nan"))
    return plans, trace_ids, waiting


def test_scrape_has_every_contract_metric_with_its_name_type_and_labels(live_library: int) -> None:
    """Both parsers see every contract family with exactly its name, type and label names."""
    _, _, waiting = _workload_with_gauges()
    try:
        _contract_scrape(live_library)
    finally:
        waiting.end()  # a failed assertion must not leave the execution's context behind


def _contract_scrape(live_library: int) -> None:
    tasks = exporter._config.current().tasks  # type: ignore[union-attr]
    assert tasks is not None
    tasks.refresh_now()  # the store's waiting gauges, read now rather than in 15 s
    text = _scrape(live_library)
    openmetrics = _scrape(live_library, OPENMETRICS_ACCEPT)
    problems = _check_families(list(parse_text(text)), "text")
    problems += _check_families(list(parse_openmetrics(openmetrics)), "openmetrics")
    assert not problems, "\n".join(problems)
    # the gauges say what is going on now
    families = {f.name: f for f in parse_text(text)}
    pending = {tuple(sorted(s.labels.items())): s.value for s in families[sc.EXECUTIONS_PENDING.name].samples}
    assert pending[(("agent", "triage"), ("reason", "queued"))] == 1
    dropped = {
        s.labels["reason"]: s.value for s in families["agent_exporter_dropped"].samples if s.name.endswith("_total")
    }
    assert dropped.get(sc.DropReason.INVALID_SCORE.value) == 1, dropped


def test_histograms_carry_trace_id_exemplars_in_openmetrics(live_library: int) -> None:
    """Every histogram's buckets carry `trace_id` exemplars naming the workload's executions."""
    _, trace_ids, waiting = _workload_with_gauges()
    waiting.end()
    families = {f.name: f for f in parse_openmetrics(_scrape(live_library, OPENMETRICS_ACCEPT))}
    for spec in sc.METRICS:
        if spec.type != "histogram":
            continue
        exemplars = [s.exemplar for s in families[spec.name].samples if s.exemplar is not None]
        assert exemplars, f"{spec.name} has no exemplars"
        for ex in exemplars:
            assert set(ex.labels) == {sc.EXEMPLAR_TRACE_ID}, ex
            assert ex.labels[sc.EXEMPLAR_TRACE_ID] in trace_ids, f"{spec.name}: exemplar {ex} is not a workload trace"
        non_bucket = [s for s in families[spec.name].samples if s.exemplar and not s.name.endswith("_bucket")]
        assert not non_bucket, non_bucket
    # the text format has no exemplars (they would break it)
    assert "trace_id" not in _scrape(live_library)


@pytest.mark.servers
def test_promtool_check_metrics_is_clean(live_library: int) -> None:
    """`promtool check metrics` on a real text-format scrape prints nothing."""
    promtool = require_binary("promtool")
    _, _, waiting = _workload_with_gauges()
    text = _scrape(live_library)
    waiting.end()
    assert "agent_executions_started_total" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and output == "", output


# ------------------------------------------------------------------ a real Prometheus


def _by(prom: PrometheusServer, expr: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """`sum by (labels) (expr)` as {label values: value}, zero series left out."""
    result = prom.query(f"sum by ({', '.join(labels)}) ({expr})")
    out = {}
    for series in result:
        value = float(series["value"][1])
        if value:
            out[tuple(series["metric"].get(k, "") for k in labels)] = value
    return out


def _sum_over_status(finished: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    """(agent, version, status) counts summed to (agent, version)."""
    out: Counter[tuple[str, ...]] = Counter()
    for (agent, version, _status), n in finished.items():
        out[(agent, version)] += n
    return out


def _approx_equal(got: dict[tuple[str, ...], float], want: dict[tuple[str, ...], float]) -> bool:
    return set(got) == set(want) and all(math.isclose(got[k], want[k], rel_tol=1e-9) for k in want)


@pytest.mark.servers
def test_prometheus_scrapes_the_workload_and_reports_it_back(
    prometheus_factory: Callable[..., PrometheusServer], live_library: int
) -> None:
    """A real Prometheus scraping at 1 s reports exactly the workload's totals and its trace ids."""
    prom = prometheus_factory(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{live_library}"]}]}
            ],
        }
    )
    up = f'up{{job="{sc.SCRAPE_JOB}"}}'
    prom.wait_for(lambda: prom.query_value(up) == 1, timeout=30)
    t_start = time.time()
    plans, trace_ids = run_workload(rounds=3, pause=1.2)  # scrapes land between and during rounds
    waiting = exporter.start_execution("invoice", trigger="webhook", task_id="queued-at-query", pending="queued")
    queued_since = time.time()
    t_end = time.time()
    # one scrape that began after the workload ended: from then on everything is final
    prom.wait_for(lambda: (prom.query_value(f"timestamp({up})") or 0) > t_end + 0.1, timeout=15)
    e = expected_of(plans)

    checks = {
        "started": (_by(prom, "agent_executions_started_total", ("agent", "trigger")), e.started),
        "finished": (_by(prom, "agent_executions_finished_total", ("agent", "trigger", "status")), e.finished),
        "failures": (_by(prom, "agent_execution_failures_total", ("agent", "trigger", "cause")), e.failures),
        "steps": (_by(prom, "agent_steps_total", ("agent", "step", "status")), e.steps),
        "tool calls": (_by(prom, "agent_tool_calls_total", ("agent", "tool", "outcome")), e.tool_calls),
        "tokens": (_by(prom, "agent_tokens_total", ("agent", "step", "type")), e.tokens),
        "evaluations": (
            _by(prom, "agent_evaluations_total", ("agent", "step", "evaluation", "result")),
            e.evaluations,
        ),
        "version finished": (
            _by(prom, "agent_version_executions_finished_total", ("agent", "version", "status")),
            e.version_finished,
        ),
        "version duration count": (
            _by(prom, "agent_version_execution_duration_seconds_count", ("agent", "version")),
            _sum_over_status(e.version_finished),
        ),
        "version score count": (
            _by(prom, "agent_version_execution_evaluation_score_count", ("agent", "version")),
            e.version_score_count,
        ),
        "version score sum": (
            _by(prom, "agent_version_execution_evaluation_score_sum", ("agent", "version")),
            e.version_score_sum,
        ),
        "version tool calls": (
            _by(prom, "agent_version_tool_calls_total", ("agent", "version", "outcome")),
            e.version_tool_calls,
        ),
        "version tokens": (_by(prom, "agent_version_tokens_total", ("agent", "version", "type")), e.version_tokens),
        "agent info": (_by(prom, "agent_info", ("agent", "version")), e.version_info),
        "branches": (_by(prom, "agent_branch_decisions_total", ("agent", "step", "path")), e.branches),
        "step score count": (_by(prom, "agent_step_evaluation_score_count", ("agent", "step")), e.step_score_count),
        "step score sum": (_by(prom, "agent_step_evaluation_score_sum", ("agent", "step")), e.step_score_sum),
        "exec score count": (
            _by(prom, "agent_execution_evaluation_score_count", ("agent", "trigger")),
            e.exec_score_count,
        ),
        "exec score sum": (_by(prom, "agent_execution_evaluation_score_sum", ("agent", "trigger")), e.exec_score_sum),
        "pending count": (
            _by(prom, "agent_execution_pending_duration_seconds_count", ("agent", "reason")),
            e.pending_count,
        ),
        "duration count": (
            _by(prom, "agent_execution_duration_seconds_count", ("agent", "trigger", "status")),
            e.finished,
        ),
    }
    wrong = {
        name: {"prometheus": dict(sorted(got.items())), "workload": dict(sorted(dict(want).items()))}
        for name, (got, want) in checks.items()
        if not _approx_equal(got, dict(want))
    }
    assert not wrong, wrong
    assert sum(e.started.values()) == len(plans) and sum(e.failures.values()) > 0

    # gauges: nothing running, one execution still queued since about `queued_since`
    assert _by(prom, "agent_executions_in_progress", ("agent",)) == {}
    assert _by(prom, "agent_executions_pending", ("agent", "reason")) == {("invoice", "queued"): 1.0}
    oldest = prom.query_value('agent_execution_pending_oldest_timestamp_seconds{agent="invoice",reason="queued"}')
    assert oldest is not None and abs(oldest - queued_since) < 5, (oldest, queued_since)
    waiting.end()

    # exemplars: stored by Prometheus, and every trace id is one of the workload's executions
    stored = prom.query_exemplars('{__name__=~"agent_.+_bucket"}', t_start - 60, time.time() + 60)
    seen: dict[str, set[str]] = {}
    for series in stored:
        for ex in series["exemplars"]:
            seen.setdefault(series["seriesLabels"]["__name__"], set()).add(ex["labels"].get(sc.EXEMPLAR_TRACE_ID, ""))
    found = set().union(*seen.values()) if seen else set()
    assert found and found <= trace_ids, (found - trace_ids, sorted(seen))
    for spec in (sc.EXECUTION_DURATION, sc.STEP_DURATION, sc.TOOL_CALL_DURATION, sc.STEP_EVALUATION_SCORE):
        assert seen.get(spec.name + "_bucket"), f"no exemplar stored for {spec.name}: {sorted(seen)}"
