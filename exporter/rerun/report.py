"""The before/after report of a re-run: per case a verdict, a summary, gate rules, JSON and JUnit.

A case passes when its execution completed (the task list's completion); its verdict compares the
case's recorded status with the re-run's: `fixed` (newly passing), `regressed` (newly failing),
`still_passing`, `still_failing`. In JUnit a regression is a failure; nothing else is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from .. import semconv as sc
from .cases import criteria_of

COMPLETED = sc.ExecutionStatus.COMPLETED.value
FIXED, REGRESSED, STILL_PASSING, STILL_FAILING = "fixed", "regressed", "still_passing", "still_failing"
RULE_NAMES = ("new_failures", "completion", "score_drop", "cost_increase")
_RULE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)(%?)\s*$")


def outcome(**kw: Any) -> dict[str, Any]:
    """A re-run's outcome: what `Report.add` takes as `after`."""
    evaluations = kw.pop("evaluations", [])
    kw["criteria"] = criteria_of([{"evaluations": evaluations}])
    return kw


@dataclass(frozen=True)
class Rule:
    """One gate: `new_failures>0`, `completion<0.9`, `score_drop>0.05`, `cost_increase>20%`."""

    text: str
    name: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> Rule:
        m = _RULE.match(text)
        if m is None or m.group(1) not in RULE_NAMES:
            raise ValueError(
                f"--fail-on {text!r}: a rule is NAME OP NUMBER with NAME one of {', '.join(RULE_NAMES)} "
                "and OP one of > < >= <= (e.g. new_failures>0, completion<0.9, score_drop>0.05, cost_increase>20%)"
            )
        limit = float(m.group(3)) / (100 if m.group(4) else 1)
        return cls(text.strip(), m.group(1), m.group(2), limit)

    def trips(self, value: float | None) -> bool:
        if value is None:
            return False  # not measurable (no scores, no cost): said in the report, never a trip
        return {">": value > self.limit, "<": value < self.limit, ">=": value >= self.limit, "<=": value <= self.limit}[
            self.op
        ]


def parse_rules(text: str | Sequence[str] | None) -> list[Rule]:
    if not text:
        return []
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    return [Rule.parse(p) for p in parts if p.strip()]


def _mean(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return sum(vs) / len(vs) if vs else None


def _total(values: Sequence[float | None]) -> float | None:
    """The sum, or None when any is unknown (a partial sum would compare unlike with like)."""
    if not values or any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None))


@dataclass
class Report:
    version: str | None
    run_id: str
    started_at: float
    interrupted: bool = False
    cases: list[dict[str, Any]] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, case: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
        before = {
            "status": case.get("status"),
            "cause": case.get("cause"),
            "runtime": case.get("runtime_seconds"),
            "input_tokens": case.get("input_tokens"),
            "output_tokens": case.get("output_tokens"),
            "cost": case.get("cost"),
            "score": case.get("score"),
            "criteria": case.get("criteria") or {},
        }
        ok_before, ok_after = before["status"] == COMPLETED, after["status"] == COMPLETED
        verdict = (
            (FIXED if ok_after else STILL_FAILING) if not ok_before else (STILL_PASSING if ok_after else REGRESSED)
        )
        result = {
            "id": case["id"],
            "agent": case.get("agent"),
            "verdict": verdict,
            "before": before,
            "after": dict(after),
        }
        self.cases.append(result)
        return result

    def finish(self, order: Sequence[str]) -> None:
        """Cases in the file's order, those not run listed, the summary computed."""
        rank = {cid: i for i, cid in enumerate(order)}
        self.cases.sort(key=lambda c: rank.get(c["id"], len(rank)))
        ran = {c["id"] for c in self.cases}
        self.not_run = [cid for cid in order if cid not in ran]
        self.seconds = time.time() - self.started_at
        self.summary = self._summary()

    def _summary(self) -> dict[str, Any]:
        cs = self.cases
        n = len(cs)
        done_before = sum(c["before"]["status"] == COMPLETED for c in cs)
        done_after = sum(c["after"]["status"] == COMPLETED for c in cs)
        criteria: dict[str, dict[str, Any]] = {}
        for side in ("before", "after"):
            for c in cs:
                for name, v in c[side]["criteria"].items():
                    k = criteria.setdefault(
                        name, {"passed_before": 0, "failed_before": 0, "passed_after": 0, "failed_after": 0}
                    )
                    if v.get("result") == "pass":
                        k[f"passed_{side}"] += 1
                    elif v.get("result") == "fail":
                        k[f"failed_{side}"] += 1
        for name, k in criteria.items():
            k["change"] = k["passed_after"] - k["passed_before"]
            for side in ("before", "after"):
                k[f"score_{side}"] = _mean([c[side]["criteria"].get(name, {}).get("score") for c in cs])
        score_before = _mean([c["before"]["score"] for c in cs])
        score_after = _mean([c["after"]["score"] for c in cs])
        runtime_before = _total([c["before"]["runtime"] for c in cs])
        runtime_after = _total([c["after"]["runtime"] for c in cs])
        cost_before = _total([c["before"]["cost"] for c in cs])
        cost_after = _total([c["after"]["cost"] for c in cs])
        return {
            "cases": n,
            "not_run": len(self.not_run),
            "completed_before": done_before,
            "completed_after": done_after,
            "completion_before": done_before / n if n else None,
            "completion_after": done_after / n if n else None,
            "newly_failing": [c["id"] for c in cs if c["verdict"] == REGRESSED],
            "newly_passing": [c["id"] for c in cs if c["verdict"] == FIXED],
            "still_failing": [c["id"] for c in cs if c["verdict"] == STILL_FAILING],
            "raised": [c["id"] for c in cs if c["after"].get("raised")],
            "criteria": dict(sorted(criteria.items())),
            "score_before": score_before,
            "score_after": score_after,
            "runtime_before_seconds": runtime_before,
            "runtime_after_seconds": runtime_after,
            "cost_before": cost_before,
            "cost_after": cost_after,
        }

    # ------------------------------------------------------------------ the gate

    def measure(self, name: str) -> float | None:
        s = self.summary
        if name == "new_failures":
            return float(len(s["newly_failing"]))
        if name == "completion":
            return s["completion_after"]  # type: ignore[no-any-return]
        if name == "score_drop":
            b, a = s["score_before"], s["score_after"]
            return None if b is None or a is None else b - a
        if name == "cost_increase":
            b, a = s["cost_before"], s["cost_after"]
            return None if b is None or a is None or b <= 0 else (a - b) / b
        raise ValueError(name)

    def check(self, rules: str | Sequence[str] | None) -> list[dict[str, Any]]:
        """Each rule (`new_failures>0,completion<0.9`) with its measured value and whether it tripped
        (value None: not measurable, e.g. no cost recorded; never a trip). ValueError on a bad rule."""
        out = []
        for r in parse_rules(rules):
            value = self.measure(r.name)
            out.append({"rule": r.text, "value": value, "tripped": r.trips(value)})
        return out

    # ------------------------------------------------------------------ outputs

    def to_dict(self, rules: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "summary": self.summary,
            "rules": list(rules),
            "not_run": self.not_run,
            "cases": self.cases,
        }

    def junit(self) -> str:
        """JUnit XML: one testcase per case; a regression is a failure, a case not run is skipped."""
        fails = sum(c["verdict"] == REGRESSED for c in self.cases)
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<testsuite name="agent-exporter rerun" tests="{len(self.cases) + len(self.not_run)}" '
            f'failures="{fails}" errors="0" skipped="{len(self.not_run)}" time="{self.seconds:.3f}">',
        ]
        for c in self.cases:
            a, b = c["after"], c["before"]
            attrs = f"classname={quoteattr('rerun.' + str(c['agent']))} name={quoteattr(c['id'])}"
            attrs += f' time="{(a["runtime"] or 0.0):.3f}"'
            if c["verdict"] == REGRESSED:
                msg = f"regressed: {b['status']} before, {_status(a)} now"
                body = a.get("error") or msg
                lines.append(f"  <testcase {attrs}>")
                lines.append(f'    <failure message={quoteattr(msg)} type="regression">{_xml_text(body)}</failure>')
                lines.append("  </testcase>")
            else:
                out = f"{c['verdict']}: {b['status']} before, {_status(a)} now"
                lines.append(f"  <testcase {attrs}><system-out>{_xml_text(out)}</system-out></testcase>")
        for cid in self.not_run:
            lines.append(f'  <testcase classname="rerun" name={quoteattr(cid)}><skipped message="not run"/></testcase>')
        lines.append("</testsuite>")
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        """The before/after table and the summary, as the CLI prints them."""
        rows = [("CASE", "BEFORE", "AFTER", "VERDICT", "RUNTIME s", "CRITERIA (before -> after)")]
        for c in self.cases:
            b, a = c["before"], c["after"]
            names = sorted(set(b["criteria"]) | set(a["criteria"]))
            crit = ", ".join(f"{n}: {_res(b['criteria'].get(n))} -> {_res(a['criteria'].get(n))}" for n in names)
            runtime = f"{_num(b['runtime'])} -> {_num(a['runtime'])}"
            rows.append((c["id"], _status(b), _status(a), c["verdict"], runtime, crit))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        s = self.summary
        out.append("")
        out.append(
            f"completed: {s['completed_before']}/{s['cases']} before -> {s['completed_after']}/{s['cases']} after"
            + (f"  ({s['not_run']} not run: interrupted)" if s["not_run"] else "")
        )
        for name, k in s["criteria"].items():
            out.append(
                f"criterion {name}: passed {k['passed_before']} -> {k['passed_after']} ({k['change']:+d}), "
                f"failed {k['failed_before']} -> {k['failed_after']}"
            )
        if s["score_before"] is not None or s["score_after"] is not None:
            out.append(f"mean score: {_num(s['score_before'], 2)} -> {_num(s['score_after'], 2)}")
        out.append(f"runtime: {_num(s['runtime_before_seconds'])} s -> {_num(s['runtime_after_seconds'])} s")
        if s["cost_before"] is not None and s["cost_after"] is not None:
            out.append(f"cost: {s['cost_before']:.6g} -> {s['cost_after']:.6g}")
        else:
            out.append("cost: not known (no cost recorded per execution)")
        out.append(f"newly failing: {', '.join(s['newly_failing']) or 'none'}")
        out.append(f"newly passing: {', '.join(s['newly_passing']) or 'none'}")
        return "\n".join(out) + "\n"


def _status(side: Mapping[str, Any]) -> str:
    st = str(side.get("status"))
    return f"{st} ({side['cause']})" if side.get("cause") else st


def _res(c: Mapping[str, Any] | None) -> str:
    return "-" if not c or c.get("result") is None else str(c["result"])


def _num(v: float | None, digits: int = 3) -> str:
    return "?" if v is None else f"{v:.{digits}f}"


def _xml_text(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)
