"""Issue 4, acceptance 2: every panel query of every dashboard returns data from a real Prometheus.

A real Prometheus (127.0.0.1, job `agent-exporter`, 1 s scrapes, exemplar storage on) scrapes the
library while a background workload runs: three agents, every trigger, failures of every cause,
cancellations, queued and approval-pending executions (some still pending when the queries run),
branch decisions, review flags, tool errors and timeouts, tokens and evaluations. Then every query
of every panel, variables substituted as Grafana would (All = `.*`), is sent to Prometheus: a range
query over the workload window with a small step, or an instant query for `instant` targets. Each
must answer without error and with at least one sample that is a number (not NaN). A panel that
cannot have data in such a workload is named in NO_DATA with the reason; it must then really be
empty, so the list cannot go stale.

Everything is collected once by a module fixture (the library is reset between tests by conftest),
then the tests assert on the collected answers.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import exporter
from dashboards import build
from exporter import semconv as sc
from tests.servers import PrometheusServer, ServerError, free_port, require_binary

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
ALERT_RULES = ROOT / "alert_rules" / "agent-rules.yml"

AGENTS = ("invoice", "support", "triage")
TRIGGERS = tuple(t.value for t in sc.Trigger)  # email, webhook, manual, timer, api
# How workload execution i ends; 11 entries (coprime with 3 agents x 5 triggers), so every agent
# and every trigger sees every ending. Every FailureCause appears, and cancellations.
ENDINGS = (
    "completed",
    "raise:validation_failure",
    "completed",
    "tool:tool_error",  # a ToolError out of a tool call fails the step and the execution
    "fail:missing_data",
    "cancelled",
    "completed",
    "raise:timeout",  # the builtin TimeoutError
    "raise:error",  # any other exception
    "max_duration",  # ran longer than its max_duration: failed, cause timeout
    "completed",
)
WORKLOAD_SECONDS = 15.0  # after Prometheus's first scrape: enough for 1m rate windows to see increases
STEP = "1s"  # range-query resolution over the workload window
# Trends panels use `$aggregation` (1d / 7d / 30d) as the increase() window, with a 1h minimum
# interval. The test runs for seconds, so it substitutes a 1m window (the samples are all inside
# it) and queries with the same small step as every other panel: a 1h step over a 30 s window
# would evaluate only the window's first instant, before the workload.
VARIABLES = {build.AGGREGATION_VAR: "1m"}

# (dashboard uid, panel title) -> why that panel cannot have data in this workload. Each entry must
# really be empty (test_no_data_panels_are_empty), so the list never hides a broken query.
NO_DATA: dict[tuple[str, str], str] = {}


# --------------------------------------------------------------------------- the workload


@dataclass
class Workload:
    """Drives executions in a background thread until stopped (bounded), and counts them."""

    stop: threading.Event = field(default_factory=threading.Event)
    finished: int = 0
    trace_ids: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def run(self, deadline: float) -> None:
        try:
            i = 0
            while not self.stop.is_set() and time.monotonic() < deadline:
                self.one(i)
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture
            self.error = exc

    def one(self, i: int) -> None:
        agent, trigger, ending = AGENTS[i % len(AGENTS)], TRIGGERS[i % len(TRIGGERS)], ENDINGS[i % len(ENDINGS)]
        pending = "queued" if i % 4 == 1 else None
        max_duration = 0.005 if ending == "max_duration" else None
        try:
            with exporter.execution(agent, trigger=trigger, pending=pending, max_duration=max_duration) as run:
                self.trace_ids.add(run.trace_id)
                if pending:
                    time.sleep(0.005)  # queued a moment; entering the first step starts it
                self.steps(run, agent, i, ending)
                if ending == "max_duration":
                    time.sleep(0.01)
                elif ending.startswith("raise:"):
                    raise {
                        "validation_failure": exporter.ValidationFailure("total does not match the lines"),
                        "timeout": TimeoutError("upstream took too long"),
                        "error": RuntimeError("unexpected"),
                    }[ending.removeprefix("raise:")]
                elif ending.startswith("fail:"):
                    run.fail(ending.removeprefix("fail:"), "no purchase order number")
                elif ending == "cancelled":
                    run.cancel("superseded by a newer request")
        except (exporter.ExecutionFailure, TimeoutError, RuntimeError):
            pass
        self.finished += 1

    @staticmethod
    def steps(run: Any, agent: str, i: int, ending: str) -> None:
        with run.step("extract", tool="llm") as step:
            with step.tool_call("llm"):
                time.sleep(0.002 + 0.001 * (i % 7))
            # model calls (issue 24): three models, one with cache reads and writes, one unpriced,
            # every sixth call rate-limited (i % 5: each agent uses every model)
            model = ("gpt-4o", "claude-sonnet-4-5", "mystery-7b")[i % 5 % 3]
            with contextlib.suppress(RuntimeError), step.llm_call(model) as call:
                time.sleep(0.001)
                if i % 6 == 4:
                    raise RuntimeError("Error code: 429 - rate limit exceeded")
                call.record_usage(input_tokens=400 + 10 * (i % 9), output_tokens=80 + i % 13,
                                  cache_read_tokens=100 if model != "mystery-7b" else 0,
                                  cache_write_tokens=50 if model == "claude-sonnet-4-5" else 0)  # fmt: skip
            # scores 0.70-0.99: some below the 0.9 objective (fail), most above (pass)
            step.evaluate("accuracy", score=0.70 + 0.03 * (i % 10))
        if i % 4 == 3:  # a human approval in the middle of the run, in-process
            run.wait("approval")
            time.sleep(0.005)
            run.start()
        with run.step("route", tool="crm") as step:
            step.branch(selected="auto" if i % 3 else "manual_review", not_selected=["escalate"])
            step.evaluate("policy", passed=i % 6 != 0)
            if i % 5 == 0:
                step.flag_for_review("low confidence in the routing decision")
            with contextlib.suppress(exporter.ToolError, TimeoutError):  # the step survives these
                with step.tool_call("crm"):
                    time.sleep(0.001)
                    if i % 7 == 2:
                        raise exporter.ToolError("CRM answered 503")
                    if i % 7 == 5:
                        raise TimeoutError("CRM did not answer")
        with run.step("respond", tool=f"{agent}_api") as step:
            step.record_usage(input_tokens=200, output_tokens=150 + i % 50)
            with step.tool_call("gmail" if i % 2 else "slack"):
                if ending == "tool:tool_error":
                    raise exporter.ToolError("mail server refused the message")
                time.sleep(0.001)
            score = 0.85 + 0.01 * (i % 15)
            # now and then a percentage: corrected (agent_exporter_dropped_total{reason="score_corrected"})
            step.evaluate("tone", score=score * 100 if i % 10 == 0 else score)


@contextlib.contextmanager
def still_pending() -> Iterator[set[str]]:
    """Executions that stay pending (queued, and awaiting approval) until the block ends.

    Yields their trace ids (the approval ones ran a step first, so they have exemplars too).
    """
    ready, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []
    trace_ids: set[str] = set()

    def hold() -> None:
        try:
            with contextlib.ExitStack() as stack:
                runs = [
                    stack.enter_context(exporter.execution("invoice", trigger="api", pending="queued")),
                    stack.enter_context(exporter.execution("triage", trigger="timer", pending="queued")),
                ]
                for agent in ("support", "invoice"):
                    run = stack.enter_context(exporter.execution(agent, trigger="webhook"))
                    with run.step("draft"):
                        pass
                    run.wait("approval")  # stays pending in this process
                    runs.append(run)
                trace_ids.update(run.trace_id for run in runs)
                ready.set()
                release.wait(timeout=120)
                for run in runs:
                    run.cancel("test over")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=hold, name="still-pending", daemon=True)
    thread.start()
    ready.wait(timeout=10)
    try:
        if failure:
            raise failure[0]
        yield trace_ids
    finally:
        release.set()
        thread.join(timeout=10)


def rules_without_hold(tmp: Path) -> Path:
    """The project's alert rules with every `for:` removed, so alerts fire within the test.

    The shortest hold in the rules is 2m and the test runs for seconds; without a hold, an alert
    whose condition holds (here AgentCompletionRateLow: about a third of the executions fail)
    fires at the next evaluation, which gives the "Firing alerts" table its rows.
    """
    doc = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path = tmp / "agent-rules-no-hold.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- collecting answers


@dataclass
class Live:
    """What Prometheus answered, collected once for the module."""

    start: float
    end: float
    answers: dict[build.PanelQuery, list[dict[str, Any]] | str]  # result, or the error text
    variables: dict[str, list[str]]  # dashboard variable definition -> values
    exemplars: dict[str, list[dict[str, Any]]]  # histogram bucket series -> query_exemplars answer
    trace_ids: set[str]
    seconds: float
    log_tail: str


def has_data(result: list[dict[str, Any]] | str) -> bool:
    """At least one sample that is a number: what Grafana needs to draw anything."""
    if isinstance(result, str):
        return False
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(value)) for _, value in samples):
            return True
    return False


def variable_query(var: dict[str, Any]) -> str:
    """`label_values(metric{m}, label)` as the equivalent PromQL, with All substituted."""
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", var["definition"])
    assert m, var["definition"]
    return f"group by ({m.group(2)}) ({build.substitute(m.group(1), {'agent': '.*'})})"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    """Run the workload under a real Prometheus, send every panel query, and tear it all down."""
    t0 = time.monotonic()
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("dashboards-live")
    port = free_port()
    exporter.reset()
    exporter.configure(
        "dashboards-live",
        metrics_port=port,
        metrics_addr="127.0.0.1",
        set_global_tracer_provider=False,
        log_level="off",
        objectives={"invoice": {sc.OBJECTIVE_COMPLETION_RATIO: 0.9}},
        span_exporter=InMemorySpanExporter(),  # an export of the library's own, so sampling holds spans
        sample_healthy=0.5,  # the sampling panel has decisions to show
        # The task store's waiting gauges (the pending panels' task store lines), read every second.
        task_store=f"sqlite:///{tmp / 'tasks.db'}",
        task_store_refresh=1,
    )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": sc.SCRAPE_JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        ],
    }
    workload = Workload()
    server = PrometheusServer(config, tmp / "prometheus", [rules_without_hold(tmp)], binary=binary)
    try:
        with server, still_pending() as pending_trace_ids:
            workload.trace_ids |= pending_trace_ids
            server.wait_for(lambda: server.query_value(f'up{{job="{sc.SCRAPE_JOB}"}}') == 1, timeout=20)
            start = time.time()
            thread = threading.Thread(
                target=workload.run, args=(time.monotonic() + WORKLOAD_SECONDS,), name="workload", daemon=True
            )
            thread.start()
            thread.join(timeout=WORKLOAD_SECONDS + 10)
            workload.stop.set()
            if workload.error is not None:
                raise workload.error
            assert not thread.is_alive(), "the workload did not stop"
            # The last scrape has every finished execution, and an alert fires (rules without hold).
            server.wait_for(
                lambda: server.query_value(f"sum({sc.EXECUTIONS_FINISHED.name})") == workload.finished, timeout=10
            )
            server.wait_for(lambda: server.query(build.FIRING), timeout=10)
            end = time.time()
            answers: dict[build.PanelQuery, list[dict[str, Any]] | str] = {}
            for q in build.iter_all_queries(variables=VARIABLES):
                try:
                    if q.instant:
                        answers[q] = server.query(q.expr, time=end)
                    else:
                        answers[q] = server.query_range(q.expr, start, end, STEP)
                except ServerError as exc:
                    answers[q] = str(exc)
            variables = {
                var["definition"]: sorted(
                    {v for s in server.query(variable_query(var), time=end) for v in s["metric"].values()}
                )
                for uid, dash in build.build_all().items()
                if uid in build.PROMETHEUS_DASHBOARDS
                for var in dash["templating"]["list"]
                if var["type"] == "query"
            }
            exemplars = {
                name: server.query_exemplars(name, start, end)
                for name in (f"{sc.STEP_DURATION.name}_bucket", f"{sc.EXECUTION_DURATION.name}_bucket")
            }
            log_tail = server.log_tail()
    finally:
        workload.stop.set()
        exporter.reset()
    return Live(start, end, answers, variables, exemplars, workload.trace_ids, time.monotonic() - t0, log_tail)


# --------------------------------------------------------------------------- tests


def panel_key(q: build.PanelQuery) -> tuple[str, str]:
    return (q.dashboard_uid, q.panel_title)


def test_every_panel_query_returns_data(live: Live) -> None:
    """Every query of every panel, variables substituted, answers with data (NO_DATA excepted)."""
    assert len(live.answers) > 50, f"only {len(live.answers)} queries: is iter_all_queries() complete?"
    empty = [
        f"{q.dashboard_uid} #{q.panel_id} {q.panel_title!r} {q.ref_id}: "
        f"{a if isinstance(a, str) else 'no data'}\n    {q.expr}"
        for q, a in live.answers.items()
        if panel_key(q) not in NO_DATA and not has_data(a)
    ]
    assert not empty, f"{len(empty)} panel queries without data:\n" + "\n".join(empty) + "\n" + live.log_tail


def test_no_data_panels_are_empty(live: Live) -> None:
    """Each NO_DATA entry names a real panel that really has no data (the list cannot go stale)."""
    keys = {panel_key(q) for q in live.answers}
    assert set(NO_DATA) <= keys, f"NO_DATA names unknown panels: {set(NO_DATA) - keys}"
    stale = [q for q, a in live.answers.items() if panel_key(q) in NO_DATA and has_data(a)]
    assert not stale, f"these NO_DATA panels have data now; remove them: {stale}"


def test_every_query_answers_without_error(live: Live) -> None:
    """No query errors, whether or not its panel is expected to have data."""
    errors = [f"{q.dashboard_uid} {q.panel_title!r}: {a}" for q, a in live.answers.items() if isinstance(a, str)]
    assert not errors, "\n".join(errors)


def stray_timestamps(result: list[dict[str, Any]] | str) -> set[float]:
    """Times at which a label-less series has a sample next to labelled ones."""
    if isinstance(result, str):
        return set()
    times: dict[bool, set[float]] = {True: set(), False: set()}
    for series in result:
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        times[bool(series["metric"])].update(float(t) for t, _ in samples)
    return times[True] & times[False]


def test_no_stray_unlabelled_series(live: Live) -> None:
    """A grouped query never adds a label-less series next to real ones (`or vector(0)` without on())."""
    stray = [
        f"{q.dashboard_uid} {q.panel_title!r} {q.ref_id}: {q.expr}"
        for q, a in live.answers.items()
        if stray_timestamps(a)
    ]
    assert not stray, "\n".join(stray)


def test_variables_list_every_agent_and_trigger(live: Live) -> None:
    """The agent, trigger and tool variables' label_values queries list what the workload used."""
    values = {definition.split(", ")[-1].rstrip(")"): found for definition, found in live.variables.items()}
    assert set(AGENTS) <= set(values[sc.LABEL_AGENT]), live.variables
    assert set(TRIGGERS) <= set(values[sc.LABEL_TRIGGER]), live.variables
    assert {"llm", "crm", "gmail", "slack"} <= set(values[sc.LABEL_TOOL]), live.variables


def test_duration_histograms_carry_trace_id_exemplars(live: Live) -> None:
    """query_exemplars on step and execution durations returns trace ids of the workload's executions."""
    for name, answer in live.exemplars.items():
        ids = {e["labels"].get(sc.EXEMPLAR_TRACE_ID) for series in answer for e in series["exemplars"]}
        assert ids, f"no exemplars for {name}: {answer}"
        assert all(isinstance(i, str) and re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
        assert ids <= live.trace_ids, f"{name}: exemplar trace ids not from the workload: {ids - live.trace_ids}"


def test_runs_within_a_minute(live: Live) -> None:
    """The whole live run (Prometheus start to last query) stays under a minute."""
    assert live.seconds < 60, f"took {live.seconds:.1f}s"
