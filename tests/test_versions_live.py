"""Issue 16, acceptance 1-2: versions and criteria through a real Prometheus scrape, and every new panel.

A real Prometheus (127.0.0.1, 1 s scrapes) scrapes the library while a scripted workload runs one
agent in two phases, like a rolling deploy: first version v1 alone, then v1 and v2 side by side.
v1 always completes; v2 fails every third execution, calls a flaky tool and spends more tokens.
Every execution evaluates four criteria: `accuracy` (always passes), `completeness` (fails once in
four), `relevance` (a score: 0.95 on v1, 0.80 on v2, under the 0.9 pass mark) and `citations`
(always fails: the failing criterion). The test then checks, from Prometheus:

- exact counts per version (finished by status, tool calls, tokens) and per criterion and result;
- every query of the agent-versions dashboard (version_a=v1, version_b=v2) answers with data for
  both versions, and the side-by-side table ranks them the way the workload was built;
- the annotation marks v2 once, after it began taking traffic, and not v1 then;
- the evaluation dashboard's pass-rate-by-criterion table lists every criterion, failing first.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import exporter
from dashboards import build
from exporter import semconv as sc
from exporter.testing import fresh_registry
from tests.servers import PrometheusServer, free_port, require_binary

pytestmark = pytest.mark.servers

AGENT = "invoice"
PHASE_ONE_RUNS = 12  # v1 alone
PHASE_TWO_RUNS = 24  # v1 and v2 alternating
PAUSE = 0.2  # between executions: both phases span several 1 s scrapes
STEP = "1s"


@dataclass
class Expected:
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)  # (version, status)
    tool_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (version, outcome)
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # (version, type)
    evaluations: Counter[tuple[str, str]] = field(default_factory=Counter)  # (criterion, result)
    scores: dict[str, list[float]] = field(default_factory=dict)  # version -> execution mean scores


def run_one(n: int, version: str, e: Expected) -> None:
    """Execution number `n` of `version`; what it must count goes into `e`."""
    fails = version == "v2" and n % 3 == 0  # v2 runs at odd n in phase two: n = 3, 9, 15, 21
    tool_error = version == "v2" and n % 4 == 1  # half of v2's runs
    tokens_in, tokens_out = (100, 20) if version == "v1" else (300, 80)
    try:
        with exporter.execution(AGENT, trigger="api", version=version) as run, run.step("Extract") as step:
            try:
                with step.tool_call("erp"):
                    if tool_error:
                        raise exporter.ToolError("ERP answered 503")
            except exporter.ToolError:
                pass  # retried elsewhere: the step goes on
            step.record_usage(input_tokens=tokens_in, output_tokens=tokens_out)
            results = {"accuracy": True, "completeness": n % 4 != 0, "citations": False}
            for criterion, passed in results.items():
                step.evaluate(criterion, passed=passed)
                e.evaluations[(criterion, "pass" if passed else "fail")] += 1
            relevance = 0.95 if version == "v1" else 0.80
            step.evaluate("relevance", score=relevance)  # pass mark: min_evaluation_score, 0.9
            e.evaluations[("relevance", "pass" if relevance >= 0.9 else "fail")] += 1
            e.scores.setdefault(version, []).append(relevance)
            if fails:
                raise exporter.ValidationFailure("totals do not add up")
    except exporter.ExecutionFailure:
        pass
    e.finished[(version, "failed" if fails else "completed")] += 1
    e.tool_calls[(version, "error" if tool_error else "success")] += 1
    e.tokens[(version, "input")] += tokens_in
    e.tokens[(version, "output")] += tokens_out


@dataclass
class Live:
    prom: PrometheusServer
    start: float
    v2_start: float  # wall time just before v2's first execution
    end: float
    expected: Expected


def _by(prom: PrometheusServer, expr: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    return {
        tuple(s["metric"].get(k, "") for k in labels): float(s["value"][1])
        for s in prom.query(f"sum by ({', '.join(labels)}) ({expr})")
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The workload under a real Prometheus, run once for the module; Prometheus stays up for the queries."""
    binary = require_binary("prometheus")
    port = free_port()
    exporter.reset()
    exporter.configure(
        "versions-live",
        metrics_port=port,
        metrics_addr="127.0.0.1",
        registry=fresh_registry(),
        log_level="off",
        agent_version="v1",  # the process default; v2 is given per execution, like a canary
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    try:
        with PrometheusServer(config, tmp_path_factory.mktemp("versions-live"), binary=binary) as prom:
            up = f'up{{job="{sc.SCRAPE_JOB}"}}'
            prom.wait_for(lambda: prom.query_value(up) == 1, timeout=30)
            e = Expected()
            start = time.time()
            for n in range(PHASE_ONE_RUNS):
                run_one(n, "v1", e)
                time.sleep(PAUSE)
            v2_start = time.time()
            for n in range(PHASE_TWO_RUNS):
                run_one(n, "v2" if n % 2 else "v1", e)
                time.sleep(PAUSE)
            done = time.time()
            # a scrape that began after the workload ended, and two more so the last rate windows fill
            prom.wait_for(lambda: (prom.query_value(f"timestamp({up})") or 0) > done + 2, timeout=15)
            exporter.reset()  # what Prometheus stored is what the tests read
            yield Live(prom, start, v2_start, time.time(), e)
    finally:
        exporter.reset()


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(v)) for s in result for _, v in (s.get("values") or [s["value"]] if s else []))


def test_exact_counts_per_version_and_criterion(live: Live) -> None:
    """Prometheus reports exactly the workload's counts per version and per criterion and result."""
    p, e = live.prom, live.expected
    assert _by(p, sc.VERSION_EXECUTIONS_FINISHED.name, ("version", "status")) == e.finished
    assert _by(p, sc.VERSION_TOOL_CALLS.name, ("version", "outcome")) == e.tool_calls
    assert _by(p, sc.VERSION_TOKENS.name, ("version", "type")) == e.tokens
    assert _by(p, sc.EVALUATIONS.name, ("evaluation", "result")) == e.evaluations
    assert _by(p, sc.VERSION_EXECUTION_DURATION.name + "_count", ("version",)) == {
        ("v1",): sum(n for (v, _), n in e.finished.items() if v == "v1"),
        ("v2",): sum(n for (v, _), n in e.finished.items() if v == "v2"),
    }
    assert _by(p, sc.AGENT_INFO.name, ("agent", "version")) == {(AGENT, "v1"): 1, (AGENT, "v2"): 1}
    score_sum = _by(p, sc.VERSION_EXECUTION_EVALUATION_SCORE.name + "_sum", ("version",))
    assert score_sum == {(v,): pytest.approx(sum(scores)) for v, scores in e.scores.items()}
    # the per-version series add up to the agent's totals
    assert sum(e.finished.values()) == p.query_value(f"sum({sc.EXECUTIONS_FINISHED.name})")


def test_every_versions_panel_has_data_for_both_versions(live: Live) -> None:
    """Every query of agent-versions, v1 against v2, answers with data for each of the two versions."""
    dash = build.versions()
    variables = {"version_a": "v1", "version_b": "v2"}
    queries = list(build.iter_queries(dash, agent=AGENT, variables=variables, range_="1m"))
    assert len(queries) == 10
    missing = []
    for q in queries:
        if q.instant:
            result = live.prom.query(q.expr, time=live.end)
        else:
            result = live.prom.query_range(q.expr, live.start, live.end, STEP)
        for version in ("v1", "v2"):
            if not has_data([s for s in result if s["metric"].get("version") == version]):
                missing.append(f"{q.panel_title} {q.ref_id} {version}: {q.expr}")
    assert not missing, "\n".join(missing)


def test_side_by_side_table_ranks_the_versions_as_built(live: Live) -> None:
    """Over the whole run, v1 completes more, errs less on tools, scores higher and spends fewer tokens."""
    dash = build.versions()
    table = dash["panels"][0]
    window = f"{math.ceil(live.end - live.start) + 5}s"
    values = {"version_a": "v1", "version_b": "v2"}
    answers = {}
    for q in build.iter_queries(dash, agent=AGENT, variables=values, range_=window):
        if q.panel_id == table["id"]:
            answers[q.ref_id] = {
                s["metric"]["version"]: float(s["value"][1]) for s in live.prom.query(q.expr, live.end)
            }
    completion, _, score, tool_errors, tokens = (answers[r] for r in "ABCDE")
    assert completion["v1"] == pytest.approx(1.0) and completion["v2"] < 1.0
    assert tool_errors["v1"] == pytest.approx(0.0) and tool_errors["v2"] > 0.3
    # v1's series span the whole range: exact. v2's begin inside it, and increase() extrapolates the
    # tokens and the finished counters differently, so only the ranking is asserted (380 vs 120 built).
    assert tokens["v1"] == pytest.approx(120) and tokens["v2"] > 2 * tokens["v1"]
    assert score["v1"] == pytest.approx(0.95) and score["v2"] == pytest.approx(0.80)


def test_annotation_marks_v2_once_after_it_started(live: Live) -> None:
    """The annotation query has points for v2 only after its first execution, in one run of steps."""
    dash = build.versions()
    (q,) = build.iter_annotation_queries(dash, agent=AGENT, interval=STEP)
    result = live.prom.query_range(q.expr, live.start, live.end, STEP)
    marks = {s["metric"]["version"]: [float(t) for t, _ in s["values"]] for s in result}
    assert marks.get("v2"), (marks, q.expr)
    v2 = marks["v2"]
    assert min(v2) >= live.v2_start, (v2, live.v2_start)
    assert max(v2) - min(v2) <= 1.0 * (len(v2) - 1) + 1e-6, f"v2 marked more than once: {v2}"
    assert all(t < live.v2_start for t in marks.get("v1", [])), marks


def test_criteria_table_lists_failing_criteria_first(live: Live) -> None:
    """Pass rate by criterion: every criterion, ascending, the always-failing one first at 0."""
    dash = build.evaluations()
    panel = next(p for p in dash["panels"] if p["title"].startswith("Pass rate by criterion"))
    window = f"{math.ceil(live.end - live.start) + 5}s"
    (q,) = [q for q in build.iter_queries(dash, agent=AGENT, range_=window) if q.panel_id == panel["id"]]
    assert q.instant
    rows = [(s["metric"]["evaluation"], float(s["value"][1])) for s in live.prom.query(q.expr, live.end)]
    assert [name for name, _ in rows] == ["citations", "relevance", "completeness", "accuracy"], rows
    assert rows[0][1] == 0 and rows[-1][1] == pytest.approx(1.0)
    assert [v for _, v in rows] == sorted(v for _, v in rows)


def test_version_variables_list_both_versions(live: Live) -> None:
    """version_a / version_b's label_values query lists v1 and v2."""
    var = next(v for v in build.versions()["templating"]["list"] if v["name"] == "version_a")
    inner = var["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
    expr = f"group by (version) ({build.substitute(inner, {'agent': AGENT})})"
    assert {s["metric"]["version"] for s in live.prom.query(expr)} == {"v1", "v2"}
