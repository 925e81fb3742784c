"""Issue 10: framework agents get the same metrics, read back from a real Prometheus scrape.

Pydantic AI, the OpenAI Agents SDK and LangGraph (OpenInference and OpenLLMetry) run offline
with scripted models (tests/frameworks/) under `configure(span_metrics=True)`, each scenario
(ok, a raising tool, a failing run, a model error) several times, spread over a few seconds.
Each framework gets its own trigger through `exporter.task()`, so its executions can be told
apart. A real Prometheus scrapes the library's /metrics; the counts it reports back must equal
what the scenarios did, exactly. Then every dashboard query whose series a framework agent
can have must return data.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import exporter
from dashboards import build
from exporter import semconv as sc
from tests.frameworks import SCENARIOS, require_frameworks
from tests.servers import PrometheusServer, free_port, require_binary
from tests.test_dashboards import metric_names
from tests.test_dashboards_live import VARIABLES, has_data, rules_without_hold
from tests.test_spanmap import EXPECTED

pytestmark = pytest.mark.servers

TRIGGER = {"pydantic_ai": "email", "openai_agents": "webhook", "langgraph_openinference": "timer",
           "langgraph_openllmetry": "api"}  # fmt: skip
TOKEN_STEP = {"pydantic_ai": "chat scripted", "openai_agents": "response", "langgraph_openinference": "agent",
              "langgraph_openllmetry": "agent"}  # fmt: skip
ROUNDS = 3  # each framework x scenario runs once per round
ROUND_GAP = 2.5  # seconds between rounds: rate() windows see increases across several scrapes

# Series a framework agent has (the rest need the API: pending, in progress, branches, scores).
DERIVED = {
    sc.EXECUTIONS_STARTED, sc.EXECUTIONS_FINISHED, sc.EXECUTION_FAILURES, sc.EXECUTION_DURATION, sc.STEPS,
    sc.STEP_DURATION, sc.TOOL_CALLS, sc.TOOL_CALL_DURATION, sc.TOKENS, sc.OBJECTIVE,
}  # fmt: skip
DERIVED_SERIES = {n for spec in DERIVED for n in (spec.name, *sc.exposed_series_names(spec))} | {"up"}
# Panels over those series that still cannot have data from spans, and why; each must really be
# empty here (test_not_derivable_panels_are_empty), so the list cannot hide a broken query.
NOT_DERIVABLE: dict[tuple[str, str], str] = {
    ("agent-evaluations", "Needs-review steps by step"): "no span says a step needs review (step.flag_for_review())",
    ("agent-evaluations", "Needs-review steps per hour"): "no span says a step needs review (step.flag_for_review())",
}


@dataclass
class Live:
    answers: dict[str, float]  # PromQL -> value at the end
    panels: dict[build.PanelQuery, list[dict[str, Any]] | str]
    raised: Counter[str]  # case -> runs that raised


def _sum(server: PrometheusServer, expr: str) -> float:
    value = server.query_value(f"sum({expr})")
    return float(value) if value is not None else 0.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    """Run every framework scenario under span_metrics, scraped by a real Prometheus."""
    require_frameworks()
    from tests.frameworks.dump import CASES

    binary = require_binary("prometheus")
    tmp: Path = tmp_path_factory.mktemp("frameworks-live")
    port = free_port()
    provider = TracerProvider()
    exporter.reset()
    exporter.configure(
        "frameworks-live", metrics_port=port, metrics_addr="127.0.0.1", tracer_provider=provider,
        span_metrics=True, log_level="off",
    )  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    raised: Counter[str] = Counter()
    try:
        with PrometheusServer(config, tmp / "prometheus", [rules_without_hold(tmp)], binary=binary) as server:
            server.wait_for(lambda: server.query_value(f'up{{job="{sc.SCRAPE_JOB}"}}') == 1, timeout=20)
            start = time.time()
            for r in range(ROUNDS):
                for case, trigger in TRIGGER.items():
                    for scenario in SCENARIOS:
                        with exporter.task(trigger=trigger, task_id=f"{case}-{scenario}-{r}"):
                            try:
                                CASES[case].run(scenario, provider)
                            except Exception:  # noqa: BLE001 - the scenario's own failure, counted below
                                raised[case] += 1
                time.sleep(ROUND_GAP)
            total = ROUNDS * len(TRIGGER) * len(SCENARIOS)
            server.wait_for(lambda: _sum(server, sc.EXECUTIONS_FINISHED.name) == total, timeout=15)
            end = time.time()
            queries = [
                *(f'{sc.EXECUTIONS_FINISHED.name}{{agent="weather",trigger="{t}",status="{s}"}}'
                  for t in TRIGGER.values() for s in ("completed", "failed")),
                *(f'{sc.EXECUTION_FAILURES.name}{{agent="weather",trigger="{t}",cause="{c}"}}'
                  for t in TRIGGER.values() for c in ("tool_error", "validation_failure", "error")),
                *(f'{sc.TOOL_CALLS.name}{{agent="weather",tool="lookup",outcome="{o}"}}' for o in ("success", "error")),
                *(f'{sc.TOKENS.name}{{agent="weather",step="{s}",type="{k}"}}'
                  for s in set(TOKEN_STEP.values()) for k in ("input", "output")),
                *(f'{sc.STEPS.name}{{agent="weather",step="{s}",status="{st}"}}'
                  for s in ("chat scripted", "response", "agent", "tools") for st in ("passed", "failed")),
                f"{sc.EXECUTIONS_STARTED.name}",
                f'{sc.EXPORTER_DROPPED.name}{{reason=~"bad_span|trace_over_budget|internal_error"}}',
            ]  # fmt: skip
            answers = {q: _sum(server, q) for q in queries}
            panels: dict[build.PanelQuery, list[dict[str, Any]] | str] = {}
            for q in build.iter_all_queries(variables=VARIABLES):
                if not metric_names(q.expr) <= DERIVED_SERIES:
                    continue
                if q.instant:
                    panels[q] = server.query(q.expr, time=end)
                else:
                    panels[q] = server.query_range(q.expr, start, end, "1s")
    finally:
        exporter.reset()
    return Live(answers, panels, raised)


def _expected() -> dict[str, float]:
    """What Prometheus must report, from what each scenario is known to do (tests/test_spanmap.py)."""
    out: Counter[str] = Counter()
    for case, trigger in TRIGGER.items():
        for scenario in SCENARIOS:
            status, cause, steps, tools, tin, tout = EXPECTED[f"{case}_{scenario}"]
            out[f'{sc.EXECUTIONS_FINISHED.name}{{agent="weather",trigger="{trigger}",status="{status}"}}'] += ROUNDS
            if cause:
                out[f'{sc.EXECUTION_FAILURES.name}{{agent="weather",trigger="{trigger}",cause="{cause}"}}'] += ROUNDS
            for (tool, outcome), n in tools.items():
                out[f'{sc.TOOL_CALLS.name}{{agent="weather",tool="{tool}",outcome="{outcome}"}}'] += ROUNDS * n
            step = TOKEN_STEP[case]
            out[f'{sc.TOKENS.name}{{agent="weather",step="{step}",type="input"}}'] += ROUNDS * tin
            out[f'{sc.TOKENS.name}{{agent="weather",step="{step}",type="output"}}'] += ROUNDS * tout
            for (name, st), n in steps.items():
                out[f'{sc.STEPS.name}{{agent="weather",step="{name}",status="{st}"}}'] += ROUNDS * n
    out[sc.EXECUTIONS_STARTED.name] = ROUNDS * len(TRIGGER) * len(SCENARIOS)
    return dict(out)


def test_counts_scraped_by_prometheus_are_exact(live: Live) -> None:
    """Executions by status and cause (per framework), tool calls by outcome, tokens, steps: exact."""
    expected = _expected()
    wrong = {q: (live.answers[q], expected.get(q, 0.0)) for q in live.answers if "dropped" not in q
             and live.answers[q] != expected.get(q, 0.0)}  # fmt: skip
    assert not wrong, "\n".join(f"{q}: prometheus {got}, expected {want}" for q, (got, want) in wrong.items())


def test_nothing_dropped_or_raised_inside_the_library(live: Live) -> None:
    """No span was unreadable or over budget, and no internal error was counted."""
    dropped = next(v for q, v in live.answers.items() if "dropped" in q)
    assert dropped == 0


def test_failing_scenarios_raised_in_the_app_as_they_would_without_the_library(live: Live) -> None:
    """The bridge changes nothing for the application: the failing scenarios still raise."""
    from tests.frameworks.dump import CASES

    for case in TRIGGER:
        module = __import__(CASES[case].module, fromlist=["EXPECTED"])
        assert live.raised[case] == ROUNDS * sum(1 for s in SCENARIOS if module.EXPECTED[s].raises is not None)


def test_dashboard_queries_return_data_for_a_framework_agent(live: Live) -> None:
    """Every panel query over series a framework agent has returns data (not NaN)."""
    assert len(live.panels) >= 20, f"only {len(live.panels)} panel queries over derivable series"
    empty = [f"{q.dashboard_uid} {q.panel_title!r} {q.ref_id}: {q.expr}" for q, a in live.panels.items()
             if not has_data(a) and (q.dashboard_uid, q.panel_title) not in NOT_DERIVABLE]  # fmt: skip
    assert not empty, f"{len(empty)} panel queries without data:\n" + "\n".join(empty)


def test_not_derivable_panels_are_empty(live: Live) -> None:
    """The panels listed as not derivable from spans really have no data (the list is not stale)."""
    listed = [q for q in live.panels if (q.dashboard_uid, q.panel_title) in NOT_DERIVABLE]
    assert len({(q.dashboard_uid, q.panel_title) for q in listed}) == len(NOT_DERIVABLE)
    assert not [q for q in listed if has_data(live.panels[q])]
