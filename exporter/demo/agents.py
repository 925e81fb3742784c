"""Three simulated agents written against the public API only, as a real agent would be.

Durations are in *simulated* seconds (what a real agent would take); `Sim.sleep` divides them by
the speed factor, so the recorded (real) durations are compressed by the same factor, and so are
the demo's time objectives (see `objectives()`). Every execution draws from its own seeded
`random.Random`, so a run is reproducible whatever order the threads happen to run in.
"""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import exporter

INVOICE = "invoice"
SUPPORT = "support-email"
REPORT = "daily-report"
AGENTS = (INVOICE, SUPPORT, REPORT)

# Scenario name -> (what it does, the alert it is meant to provoke, the agent it hits).
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "degraded-tool": (
        "Salesforce answers 45% of the invoice agent's CRM calls with errors (retried)",
        "AgentToolErrorRateHigh",
        INVOICE,
    ),
    "slow-step": (
        "the invoice extraction model gets 8x slower",
        "AgentRuntimeHigh",
        INVOICE,
    ),
    "falling-scores": (
        "the support-email reply quality drops to about 0.55",
        "AgentEvaluationScoreLow",
        SUPPORT,
    ),
    "approval-backlog": (
        "invoice approvers take 15x longer; executions pile up pending approval",
        "AgentTasksStuckPending",
        INVOICE,
    ),
    "failing-agent": (
        "the daily-report agent's warehouse partitions go missing: 80% of its runs fail",
        "AgentCompletionRateLow",  # and AgentCompletionErrorBudgetBurn
        REPORT,
    ),
    "failing-trigger": (
        "support-email executions from the webhook trigger lose their ticket id and fail",
        "AgentTriggerCompletionRateLow",
        SUPPORT,
    ),
    "cost-spike": (
        "a prompt change puts each customer's whole ticket history into the support-email reply "
        "model's context: about 30x the input tokens, so about 20x the spend",
        "AgentCostSpike",
        SUPPORT,
    ),
}
# Scenarios whose alert compares with the agent's own past (a baseline): they need healthy history
# before they start (`--scenario-delay`), so they are checked on their own (tests/test_demo.py).
BASELINED: frozenset[str] = frozenset({"cost-spike"})

# The models the agents call (three, priced by genai-prices): the invoice extraction reuses a cached
# prompt (cache reads, and a cache write when the cache is cold), the support classifier is small.
EXTRACT_MODEL = ("openai", "gpt-4o")
CLASSIFY_MODEL = ("openai", "gpt-4o-mini")
WRITE_MODEL = ("anthropic", "claude-sonnet-4-5")
# And one no price list knows: support emails not in English are translated first by a self-hosted
# model; its tokens are counted unpriced (agent_llm_unpriced_tokens_total), never guessed.
TRANSLATE_MODEL = ("self-hosted", "opus-mt-mul-en")
MODELS = (EXTRACT_MODEL, CLASSIFY_MODEL, WRITE_MODEL, TRANSLATE_MODEL)

# Targets in simulated seconds; time objectives are divided by the speed factor.
_OBJECTIVES: dict[str, dict[str, float]] = {
    INVOICE: {"completion_ratio": 0.95, "max_runtime_seconds": 60, "min_evaluation_score": 0.85,
              "max_tool_error_ratio": 0.10, "max_pending_seconds": 900},
    SUPPORT: {"completion_ratio": 0.90, "max_runtime_seconds": 90, "min_evaluation_score": 0.80,
              "max_tool_error_ratio": 0.10, "max_pending_seconds": 900},
    REPORT: {"completion_ratio": 0.95, "max_runtime_seconds": 300, "min_evaluation_score": 0.80,
             "max_tool_error_ratio": 0.10, "max_pending_seconds": 900},
}  # fmt: skip
# An execution running this many times its runtime objective is failed by the library (timeout).
_MAX_DURATION_FACTOR = 4.0


def objectives(speed: float) -> dict[str, dict[str, float]]:
    """Per-agent objectives for `exporter.configure()`, time targets compressed by `speed`."""
    return {
        agent: {k: (v / speed if k.endswith("_seconds") else v) for k, v in targets.items()}
        for agent, targets in _OBJECTIVES.items()
    }


class Stopping(Exception):
    """Raised inside an execution when the demo is stopping (the execution is cancelled)."""


def _cancel(run: Any, message: str) -> None:
    if not run.ended:  # the library may have failed it already (max_duration)
        run.cancel(message)


@dataclass
class Sim:
    """Simulated time and the switches every agent reads."""

    speed: float
    stop: threading.Event
    scenarios: Collection[str] = ()
    scenario_start: float = 0.0  # time.monotonic() from which scenarios apply
    approvals: Any = None  # ApprovalDesk for suspended executions
    clock: Callable[[], float] = field(default=lambda: 0.0)
    # Part of every task id: a restarted demo writing to the same task store must not reuse the
    # ids of the executions (and parked approvals) an earlier run left there.
    run_id: str = ""

    def task_id(self, prefix: str, n: int) -> str:
        return f"{prefix}-{self.run_id}-{n}" if self.run_id else f"{prefix}-{n}"

    def sleep(self, sim_seconds: float) -> None:
        """Wait `sim_seconds` of simulated time; raise Stopping when the demo stops meanwhile."""
        if self.stop.wait(max(0.0, sim_seconds) / self.speed):
            raise Stopping

    def active(self, scenario: str) -> bool:
        return scenario in self.scenarios and self.clock() >= self.scenario_start

    def real(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed


def _lognormal(rng: random.Random, median: float, sigma: float = 0.5) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _score(rng: random.Random, mean: float, spread: float = 0.05) -> float:
    return round(min(1.0, max(0.0, rng.gauss(mean, spread))), 3)


def _pick(rng: random.Random, weighted: dict[str, float]) -> str:
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


VENDORS = ("Acme Office Supply", "Globex Logistics", "Initech Software", "Umbrella Facilities",
           "Stark Industrial", "Wayne Consulting", "Hooli Cloud", "Vandelay Imports")  # fmt: skip
CUSTOMERS = ("ana@example.com", "bo@example.org", "chen@example.net", "dara@example.com", "eli@example.org")
CATEGORIES = ("billing", "refund", "technical", "account", "shipping")
TEAMS = ("sales", "support", "finance", "operations")


def _tool(step: Any, sim: Sim, tool: str, seconds: float, *, error: float = 0.0, timeout: float = 0.0,
          rng: random.Random, message: str = "") -> None:  # fmt: skip
    """One call to an integration: a sleep, then perhaps an error or a timeout."""
    with step.tool_call(tool):
        sim.sleep(seconds)
        roll = rng.random()
        if roll < timeout:
            raise TimeoutError(f"{tool} did not answer within {seconds:.0f}s")
        if roll < timeout + error:
            raise exporter.ToolError(message or f"{tool} answered 503 Service Unavailable")


def _with_retries(step: Any, sim: Sim, rng: random.Random, tool: str, seconds: float, error: float,
                  attempts: int = 4, timeout: float = 0.0) -> None:  # fmt: skip
    """Call a flaky integration the way agents do: retry with backoff, give up after `attempts`."""
    for attempt in range(1, attempts + 1):
        try:
            _tool(step, sim, tool, _lognormal(rng, seconds, 0.4), error=error, timeout=timeout, rng=rng)
            return
        except exporter.ToolError:
            if attempt == attempts:
                raise
            sim.sleep(0.5 * 2**attempt)


def _model_call(step: Any, sim: Sim, rng: random.Random, model: tuple[str, str], seconds: float,
                usage: Callable[[Any], None], *, error: float = 0.0, timeout: float = 0.0,
                message: str = "", run: Any = None) -> None:  # fmt: skip
    """One model call, through the `custom_gpt` integration (a tool call) as before: its latency,
    outcome and usage (priced by model) are the model call's too. No usage once `run` has ended
    (the library failed it for running too long while the model hung)."""
    provider, name = model
    with step.llm_call(name, provider=provider) as call:
        _tool(step, sim, "custom_gpt", seconds, error=error, timeout=timeout, rng=rng, message=message)
        if run is None or not run.ended:
            usage(call)


# ============================================================================ invoice


def _invoice_document(rng: random.Random, number: str, vendor: str, amount: float) -> dict[str, Any]:
    lines = [
        {"description": f"Item {i}", "quantity": rng.randint(1, 20), "unit_price": round(rng.uniform(5, 400), 2)}
        for i in range(rng.randint(1, 8))
    ]
    # Long scans, but within the default content cap (4 KiB, max_content_bytes): the demo's own data
    # is never truncated, so a truncation warning in its output means something real.
    pages = rng.randint(10, 90)
    text = f"INVOICE {number}\n{vendor}\nTotal due: {amount:.2f} USD\n" + "Terms and conditions apply. " * pages
    return {"filename": f"{number}.pdf", "vendor": vendor, "text": text, "lines": lines}


def invoice(sim: Sim, rng: random.Random, n: int) -> Any:
    """Extract, validate, route by amount (auto-approve or a human), update the CRM."""
    trigger = _pick(rng, {"email": 0.60, "webhook": 0.25, "api": 0.10, "manual": 0.05})
    vendor = rng.choice(VENDORS)
    number = sim.task_id("INV", 2026_000 + n)
    amount = round(_lognormal(rng, 700.0, 1.0), 2)
    max_duration = sim.real(_OBJECTIVES[INVOICE]["max_runtime_seconds"] * _MAX_DURATION_FACTOR)
    with exporter.execution(
        INVOICE, trigger=trigger, task_id=number, description=f"Process invoice {number} from {vendor}",
        pending="queued", max_duration=max_duration, steps=4,
    ) as run:  # fmt: skip
        try:
            sim.sleep(_lognormal(rng, 3.0, 0.8))  # waiting for a free worker
            with run.step("Extract the Required Information from the Invoice", tool="custom_gpt") as step:
                step.record_input(_invoice_document(rng, number, vendor, amount))
                latency = _lognormal(rng, 8.0, 0.35) * (8.0 if sim.active("slow-step") else 1.0)
                if rng.random() < 0.002:
                    latency = 400.0  # the model hangs: the library's max_duration fails it (timeout)
                cold = rng.random() < 0.05  # the cached extraction prompt expired: written again
                cached = 128 * rng.randint(10, 12)  # the instructions and schema, cached in blocks
                _model_call(step, sim, rng, EXTRACT_MODEL, latency, lambda call: call.record_usage(
                    rng.randint(1800, 4200), rng.randint(150, 500),
                    cache_read_tokens=0 if cold else cached, cache_write_tokens=cached if cold else 0,
                ), error=0.005, timeout=0.002, message="custom_gpt returned malformed JSON", run=run)  # fmt: skip
                if run.ended:
                    return run
                accuracy = _score(rng, 0.94, 0.04)
                step.evaluate("extraction_accuracy", score=accuracy, explanation="fields matched against the scan")
                if accuracy < 0.80:
                    step.flag_for_review(f"extraction accuracy {accuracy:.2f}: a human should check the fields")
                has_po = rng.random() > 0.005
                po = f"PO-{rng.randint(10000, 99999)}" if has_po else None
                step.record_output(
                    {"invoice_number": number, "vendor": vendor, "total": amount, "currency": "USD", "po_number": po}
                )
                if not has_po:
                    raise exporter.MissingData(f"invoice {number} has no purchase order number")
            with run.step("Validate") as step:
                sim.sleep(_lognormal(rng, 0.8, 0.4))
                totals_ok = rng.random() > 0.01
                step.evaluate("totals_match_line_items", passed=totals_ok)
                if not totals_ok:
                    raise exporter.ValidationFailure(f"total {amount:.2f} does not match the line items")
                if rng.random() < 0.005:
                    run.cancel(f"duplicate of an invoice already processed from {vendor}")
                    return run
                if rng.random() < 0.002:
                    raise RuntimeError("unexpected currency code 'XXX'")
            with run.step("Route by amount") as step:
                human = amount >= 1000
                selected, other = ("human-approval", "auto-approve") if human else ("auto-approve", "human-approval")
                where = "at or above" if human else "under"
                step.branch(
                    selected=selected,
                    not_selected=[other],
                    condition="amount >= 1000 USD",
                    reason=f"amount {amount:.2f} USD is {where} the limit",
                )
            if human:
                approval_time = min(_lognormal(rng, 180.0, 0.7), 600.0)  # a few minutes, 10 at most
                if sim.active("approval-backlog"):
                    approval_time *= 15
                if rng.random() < 0.3 and sim.approvals is not None:
                    # The approver answers in another process later: hand over the trace context.
                    carrier = run.suspend("approval")
                    sim.approvals.submit(approval_time, json.dumps(carrier), rng.random())
                    return run
                run.wait("approval")
                sim.sleep(approval_time)
                if rng.random() < 0.02:
                    run.cancel("rejected by the approver")
                    return run
                run.start()
            _update_crm(run, sim, rng, number, amount)
        except Stopping:
            _cancel(run, "demo stopped")
    return run


def _update_crm(run: Any, sim: Sim, rng: random.Random, number: str, amount: float) -> None:
    with run.step("Update the CRM", tool="salesforce") as step:
        step.record_input({"object": "Invoice__c", "number": number, "amount": amount,
                           "authorization": "Bearer sk-demo-not-a-real-token"})  # masked by the library  # fmt: skip
        error = 0.45 if sim.active("degraded-tool") else 0.02
        _with_retries(step, sim, rng, "salesforce", 1.2, error, attempts=4, timeout=0.002)
        step.record_output({"id": f"a0{rng.randint(10**9, 10**10 - 1)}", "status": "created"})


def resume_invoice(sim: Sim, carrier_json: str, roll: float) -> Any:
    """The approver's side: continue a suspended invoice, in the same trace."""
    carrier = json.loads(carrier_json)
    rng = random.Random(carrier.get("task_id", "") + "/resume")
    with exporter.resume_execution(carrier) as run:
        try:
            if roll < 0.02:
                run.cancel("rejected by the approver")
                return run
            _update_crm(run, sim, rng, str(carrier.get("task_id")), 0.0)
        except Stopping:
            _cancel(run, "demo stopped")
    return run


# ============================================================================ support email


def support_email(sim: Sim, rng: random.Random, n: int) -> Any:
    """Read the email, classify it, look up the customer, draft and send a reply."""
    trigger = _pick(rng, {"email": 0.82, "webhook": 0.13, "manual": 0.05})
    customer = rng.choice(CUSTOMERS)
    category = rng.choice(CATEGORIES)
    task_id = sim.task_id("SUP", 90_000 + n)
    max_duration = sim.real(_OBJECTIVES[SUPPORT]["max_runtime_seconds"] * _MAX_DURATION_FACTOR)
    with exporter.execution(
        SUPPORT, trigger=trigger, task_id=task_id, description=f"Answer a {category} email from {customer}",
        pending="queued", max_duration=max_duration, steps=5,
    ) as run:  # fmt: skip
        try:
            sim.sleep(_lognormal(rng, 2.0, 0.8))
            with run.step("Read the Email", tool="gmail") as step:
                _tool(step, sim, "gmail", _lognormal(rng, 0.6, 0.4), error=0.005, rng=rng)
                step.record_input({"from": customer, "subject": f"Question about my {category}",
                                   "body": "Hello, I need help with my account. " * rng.randint(1, 20)})  # fmt: skip
                lost = trigger == "webhook" and sim.active("failing-trigger") and rng.random() < 0.8
                if lost or rng.random() < 0.01:
                    raise exporter.MissingData("the message has no ticket id (webhook payload incomplete)")
            with run.step("Classify the Request", tool="custom_gpt") as step:
                if rng.random() < 0.1:  # not in English: translated first
                    with step.llm_call(TRANSLATE_MODEL[1], provider=TRANSLATE_MODEL[0]) as call:
                        sim.sleep(_lognormal(rng, 1.0, 0.3))
                        call.record_usage(rng.randint(300, 1200), rng.randint(300, 1200))
                _model_call(step, sim, rng, CLASSIFY_MODEL, _lognormal(rng, 2.5, 0.4),
                            lambda call: call.record_usage(rng.randint(400, 1500), rng.randint(5, 30)),
                            error=0.005, timeout=0.002)  # fmt: skip
                confidence = _score(rng, 0.93, 0.05)
                step.evaluate("classification_confidence", score=confidence)
                step.branch(selected=category, not_selected=[c for c in CATEGORIES if c != category],
                            condition="intent classifier", reason=f"confidence {confidence:.2f}")  # fmt: skip
            with run.step("Look Up the Customer", tool="zendesk") as step:
                _with_retries(step, sim, rng, "zendesk", 0.8, 0.02, attempts=3)
            with run.step("Draft the Reply", tool="custom_gpt") as step:
                history = 30 if sim.active("cost-spike") else 1  # the whole ticket history in the context
                _model_call(step, sim, rng, WRITE_MODEL, _lognormal(rng, 12.0, 0.4),
                            lambda call: call.record_usage(history * rng.randint(2000, 6000), rng.randint(200, 700)),
                            error=0.005, timeout=0.002)  # fmt: skip
                quality = _score(rng, 0.55 if sim.active("falling-scores") else 0.90, 0.06)
                step.evaluate("reply_quality", score=quality, explanation="LLM judge against the support rubric")
                polite = rng.random() > 0.015
                step.evaluate("tone_policy", passed=polite)
                if quality < 0.7:
                    step.flag_for_review(f"reply quality {quality:.2f}")
                if not polite:
                    raise exporter.ValidationFailure("the draft reply breaks the tone policy")
                if rng.random() < 0.005:
                    raise KeyError("template variable 'first_name'")
            with run.step("Send the Reply", tool="gmail") as step:
                _tool(step, sim, "gmail", _lognormal(rng, 0.7, 0.4), error=0.005, rng=rng)
        except Stopping:
            _cancel(run, "demo stopped")
    return run


# ============================================================================ daily report


def daily_report(sim: Sim, rng: random.Random, n: int) -> Any:
    """Query the warehouse, summarise, post to Slack (one run per team and region)."""
    trigger = _pick(rng, {"timer": 0.9, "manual": 0.1})
    team = rng.choice(TEAMS)
    return _report(sim, rng, trigger, sim.task_id("RPT", n), team)


def _report(sim: Sim, rng: random.Random, trigger: str, task_id: str | None, team: str, fallback: bool = False) -> Any:
    """The daily report; `fallback` (the changed agent, `daily_report_v2`): when yesterday's partition
    is not loaded, report from the one before instead of failing."""
    max_duration = sim.real(_OBJECTIVES[REPORT]["max_runtime_seconds"] * _MAX_DURATION_FACTOR)
    with exporter.execution(
        REPORT, trigger=trigger, task_id=task_id, description=f"Daily {team} report",
        max_duration=max_duration, steps=3,
    ) as run:  # fmt: skip
        run.record_input({"team": team})
        try:
            failing = sim.active("failing-agent")
            with run.step("Query the Data Warehouse", tool="bigquery") as step:
                _tool(step, sim, "bigquery", _lognormal(rng, 25.0, 0.5), error=0.005, timeout=0.002, rng=rng)
                rows = rng.randint(200, 20000)
                step.record_output({"team": team, "rows": rows})
                if rng.random() < (0.8 if failing else 0.005):
                    if not fallback:
                        raise exporter.MissingData(f"yesterday's partition for {team} is not loaded")
                    step.branch("previous partition", ["yesterday's partition"], reason="not loaded yet")
            with run.step("Summarise the Metrics", tool="custom_gpt") as step:
                _model_call(step, sim, rng, EXTRACT_MODEL, _lognormal(rng, 20.0, 0.4),
                            lambda call: call.record_usage(rng.randint(3000, 9000), rng.randint(300, 900)),
                            error=0.003)  # fmt: skip
                step.evaluate("summary_faithfulness", score=_score(rng, 0.92, 0.04))
            with run.step("Post to Slack", tool="slack") as step:
                _tool(step, sim, "slack", _lognormal(rng, 0.4, 0.3), error=0.005, rng=rng)
            run.record_output({"team": team, "rows": rows, "posted_to": f"#{team}-daily"})
        except Stopping:
            _cancel(run, "demo stopped")
    return run


def daily_report_v2(task: dict[str, Any]) -> None:
    """The daily-report agent as changed (it falls back to the previous partition), as an entry point
    for `agent-exporter rerun --run exporter.demo.agents:daily_report_v2` (README, "Task list"): one
    report for the case's team, under the same missing partitions, in simulated time 1000x faster."""
    sim = Sim(speed=1000.0, stop=threading.Event(), scenarios=("failing-agent",))
    rng = random.Random(json.dumps(task, sort_keys=True))
    _report(sim, rng, "manual", None, str(task["team"]), fallback=True)


# Arrival mix: which agent a new execution belongs to.
MIX: dict[str, tuple[float, Callable[[Sim, random.Random, int], Any]]] = {
    INVOICE: (0.45, invoice),
    SUPPORT: (0.40, support_email),
    REPORT: (0.15, daily_report),
}
