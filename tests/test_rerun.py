"""Re-runs (issue 26), end to end on SQLite and a real PostgreSQL: a scripted agent v1 runs 20
tasks; `cases save` keeps 10 (5 failed); `rerun` with a v2 that repairs 3 and breaks 1 gives an
exact report, JUnit with exactly one failure, and an exit code that gates CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import exporter
from exporter.rerun.cases import load
from exporter.rerun.report import Rule
from exporter.tasks.backend import Backend
from exporter.testing import fresh_registry
from tests import rerun_agent

ROOT = Path(__file__).resolve().parent.parent
FAILED_KEPT = ["T-01", "T-04", "T-07", "T-10", "T-13"]
PASSED_KEPT = ["T-00", "T-02", "T-03", "T-05", "T-06"]
KEPT = FAILED_KEPT + PASSED_KEPT
VERDICTS = {
    "T-01": "fixed", "T-04": "fixed", "T-07": "fixed", "T-10": "still_failing", "T-13": "still_failing",
    "T-00": "still_passing", "T-02": "still_passing", "T-03": "regressed", "T-05": "still_passing",
    "T-06": "still_passing",
}  # fmt: skip


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AGENT_EXPORTER_TASK_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def production(url: str) -> None:
    """v1 runs 20 tasks with inputs (7 fail total_matches), and one task records no input."""
    exporter.configure("prod", metrics_port=None, tracing=False, task_store=url)
    for n in range(20):
        try:
            rerun_agent.v1({"n": n, "customer": f"c{n}"})
        except Exception:  # noqa: BLE001, S110
            pass
    with exporter.execution("scripted", trigger="api", task_id="T-NOINPUT"):
        pass
    assert exporter.flush(10)
    exporter.shutdown()
    exporter.reset()


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in report["cases"]}


def check_report(report: dict[str, Any]) -> None:
    """The exact figures of v2 against the 10 saved cases."""
    s = report["summary"]
    assert verdicts(report) == VERDICTS
    assert (s["cases"], s["completed_before"], s["completed_after"]) == (10, 5, 7)
    assert s["newly_failing"] == ["T-03"] and s["newly_passing"] == ["T-01", "T-04", "T-07"]
    assert s["still_failing"] == ["T-10", "T-13"]
    tm = s["criteria"]["total_matches"]
    assert (tm["passed_before"], tm["failed_before"], tm["passed_after"], tm["failed_after"], tm["change"]) == (
        5, 5, 7, 3, 2,
    )  # fmt: skip
    fm = s["criteria"]["format"]
    assert (fm["passed_before"], fm["passed_after"], fm["change"]) == (10, 10, 0)
    assert s["cost_before"] is None and s["cost_after"] is None  # no cost is recorded per execution yet
    for c in report["cases"]:
        assert c["after"]["task_id"].startswith(c["id"] + "~rerun-")
        assert (c["after"]["input_tokens"], c["after"]["output_tokens"]) == (100, 10)
        assert c["after"]["output"] == {"n": int(c["id"][2:]), "ok": c["verdict"] in ("fixed", "still_passing")}


def test_save_rerun_compare_and_gate(store_url: str, tmp_path: Path) -> None:
    """cases save keeps 10 (5 failed); rerun v2: exact report, 1 JUnit failure, --fail-on exits 1,
    --concurrency 4 gives the same report, and tasks --show prints a re-run task whole."""
    production(store_url)
    cases = tmp_path / "cases.jsonl"
    ids = [a for t in KEPT for a in ("--task-id", t)]
    saved = cli("cases", "save", "--store", store_url, *ids, "--out", str(cases))
    assert saved.returncode == 0, saved.stderr
    assert [c["id"] for c in load(cases)] == KEPT
    again = cli("cases", "save", "--store", store_url, "--task-id", "T-00", "--task-id", "T-11", "--out", str(cases))
    assert again.returncode == 0 and "saved 1 case(s)" in again.stdout and "(1 already there)" in again.stdout
    lines = cases.read_text().splitlines()
    assert len(lines) == 11 and [json.loads(x)["id"] for x in lines].count("T-00") == 1
    cases.write_text("\n".join(lines[:10]) + "\n")  # back to the 10 kept
    first = load(cases)[0]
    assert first["input"] == {"n": 1, "customer": "c1"} and first["status"] == "failed"
    assert first["cause"] == "validation_failure" and first["output"] == {"n": 1, "ok": False}
    assert first["criteria"]["total_matches"] == {"result": "fail", "score": pytest.approx(0.2)}
    assert first["version"] == "v1" and first["trigger"] == "api" and first["input_tokens"] == 100
    refused = cli("cases", "save", "--store", store_url, "--task-id", "T-NOINPUT", "--out", str(tmp_path / "x.jsonl"))
    assert refused.returncode == 1
    assert "refused T-NOINPUT: no captured input" in refused.stderr and "record_input" in refused.stderr

    gate = cli(
        "rerun", str(cases), "--run", "tests.rerun_agent_cli:v2", "--version", "v2", "--store", store_url,
        "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--fail-on", "new_failures>0",
    )  # fmt: skip
    assert gate.returncode == 1, gate.stderr
    assert "[10/10]" in gate.stderr and "rule new_failures>0: 1 -> TRIPPED" in gate.stdout
    assert "completed: 5/10 before -> 7/10 after" in gate.stdout
    assert "criterion total_matches: passed 5 -> 7 (+2), failed 5 -> 3" in gate.stdout
    assert "newly failing: T-03" in gate.stdout and "newly passing: T-01, T-04, T-07" in gate.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    check_report(report)
    assert report["version"] == "v2" and report["rules"][0]["tripped"] is True
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("tests") == "10" and suite.get("failures") == "1"
    failed = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failed == ["T-03"]

    same = cli(
        "rerun", str(cases), "--run", "tests.rerun_agent_cli:v2", "--version", "v2", "--concurrency", "4",
        "--json", str(tmp_path / "r4.json"),
    )  # fmt: skip
    assert same.returncode == 0, same.stderr  # no --fail-on: exit 0
    report4 = json.loads((tmp_path / "r4.json").read_text())
    check_report(report4)
    strip = ("task_id", "runtime")
    assert [{**c, "after": {k: v for k, v in c["after"].items() if k not in strip}, "before": c["before"]}
            for c in report4["cases"]] == [
        {**c, "after": {k: v for k, v in c["after"].items() if k not in strip}, "before": c["before"]}
        for c in report["cases"]
    ]  # fmt: skip
    assert {k: v for k, v in report4["summary"].items() if "runtime" not in k} == {
        k: v for k, v in report["summary"].items() if "runtime" not in k
    }

    rerun_id = next(c["after"]["task_id"] for c in report["cases"] if c["id"] == "T-03")
    shown = cli("tasks", "--store", store_url, "--show", rerun_id)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "trigger  rerun (re-run of T-03)" in out and "version v2" in out and "failed (validation_failure)" in out
    assert '"customer": "c3"' in out and '"ok": false' in out
    assert out.index("1. extract") < out.index("2. check") and "criterion total_matches: fail 0.20" in out
    backend = Backend(store_url, create=False)
    original = backend.fetch("SELECT trigger, version, status FROM agent_tasks WHERE task_id = ?", ["T-03"])
    reruns = backend.fetch("SELECT count(*) AS n FROM agent_tasks WHERE rerun_of = ?", ["T-03"])
    backend.close()
    assert original == [{"trigger": "api", "version": "v1", "status": "completed"}]  # never merged into
    assert reruns[0]["n"] == 1  # only the first re-run had --store


def test_cases_save_by_agent_and_status(tmp_path: Path) -> None:
    """--agent --status failed --limit 5 keeps the 5 newest failed tasks; a re-run is never saved."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    production(url)
    out = tmp_path / "failed.jsonl"
    r = cli(
        "cases", "save", "--store", url, "--agent", "scripted", "--status", "failed", "--limit", "5", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert sorted(c["id"] for c in load(out)) == ["T-07", "T-10", "T-13", "T-16", "T-19"]
    assert cli("cases", "save", "--store", url, "--out", str(out)).returncode == 2  # neither --task-id nor --agent


def api_cases(tmp_path: Path) -> list[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    production(url)
    out = tmp_path / "cases.jsonl"
    ids = [a for t in KEPT for a in ("--task-id", t)]
    assert cli("cases", "save", "--store", url, *ids, "--out", str(out)).returncode == 0
    return load(out)


def test_api_async_entry_point_and_a_raising_case(tmp_path: Path) -> None:
    """exporter.rerun() with an async entry point gives the exact report; a case that raises fails that
    case only (T-00 regressed, with the error), the other cases run."""
    cases = api_cases(tmp_path)
    report = exporter.rerun(cases, rerun_agent.v2_async, version="v2")
    check_report(report.to_dict())
    assert [r["tripped"] for r in report.check("new_failures>0,completion<0.9,score_drop>0.05,cost_increase>20%")] == [
        True, True, False, False,
    ]  # fmt: skip
    assert report.check("cost_increase>20%")[0]["value"] is None  # no cost known: not measurable
    raising = exporter.rerun(cases, rerun_agent.v2_raising, version="v2", concurrency=3)
    got = {c["id"]: c for c in raising.to_dict()["cases"]}
    assert got["T-00"]["verdict"] == "regressed" and got["T-00"]["after"]["raised"] is True
    assert "RuntimeError: the new parser crashed" in got["T-00"]["after"]["error"]
    assert raising.summary["newly_failing"] == ["T-00", "T-03"] and raising.summary["completed_after"] == 6
    assert 'failures="2"' in raising.junit()


def test_rules_parse_and_usage_errors_exit_2(tmp_path: Path) -> None:
    """--fail-on rules parse (percent included); a bad rule, a bad entry point or a missing file is exit 2."""
    assert Rule.parse("cost_increase>20%").limit == pytest.approx(0.2)
    assert Rule.parse("completion<0.9").trips(0.7) and not Rule.parse("completion<0.9").trips(0.95)
    cases = tmp_path / "c.jsonl"
    cases.write_text(json.dumps({"id": "T-00", "input": {"n": 0}, "status": "completed"}) + "\n")
    assert cli("rerun", str(cases), "--run", "tests.rerun_agent:v2", "--fail-on", "speed>1").returncode == 2
    assert cli("rerun", str(cases), "--run", "tests.rerun_agent:nope").returncode == 2
    assert cli("rerun", str(cases), "--run", "no_colon").returncode == 2
    assert cli("rerun", str(tmp_path / "missing.jsonl"), "--run", "tests.rerun_agent:v2").returncode == 2


def test_ctrl_c_writes_the_report_so_far_and_stops(tmp_path: Path) -> None:
    """Ctrl-C during a re-run: the cases that ended are in the JSON and JUnit reports, the rest are
    listed as not run (JUnit: skipped), and the command exits 130."""
    api_cases(tmp_path)
    r = cli(
        "rerun", str(tmp_path / "cases.jsonl"), "--run", "tests.rerun_agent:v2_interrupted_at_3",
        "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--fail-on", "new_failures>0",
    )  # fmt: skip
    assert r.returncode == 130, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True
    assert [c["id"] for c in report["cases"]] == KEPT[:7] and report["not_run"] == KEPT[7:]
    suite = ET.parse(tmp_path / "r.xml").getroot()
    assert suite.get("skipped") == "3" and suite.get("failures") == "0"


def test_readme_rerun_commands_run_as_written_on_the_demo(tmp_path: Path) -> None:
    """The README's three commands (demo with failing reports, save its failed tasks, re-run them
    against the changed daily-report agent) run as written: failed cases saved, all fixed, exit 0."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Re-run saved tasks against a new version", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    commands = block.splitlines()
    assert [c.split()[1] for c in commands] == ["demo", "cases", "rerun"]
    for command in commands:
        args = [a.strip('"') for a in command.split()[1:]]
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 0, (command, r.stderr[-2000:])
    saved = load(tmp_path / "cases.jsonl")
    assert saved and all(c["status"] == "failed" and c["cause"] == "missing_data" for c in saved)
    suite = ET.parse(tmp_path / "rerun.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("tests") == str(len(saved))
    assert "newly passing: " in r.stdout and "newly failing: none" in r.stdout


def test_a_rerun_scope_wins_over_what_the_code_names_and_a_resume_keeps_its_carrier() -> None:
    """Inside a re-run: trigger rerun, a task id derived from the case, the re-run's version and
    task.rerun.of on the span; a second execution gets -2; a resumed execution keeps its carrier's."""
    from exporter import semconv as sc
    from exporter import testing
    from exporter.instrument.rerun_scope import RerunScope, rerun_scope_var

    with testing.capture() as cap:
        parked = exporter.start_execution("a", trigger="email", task_id="P-1")
        carrier = parked.suspend("approval")
        parked.end()
        token = rerun_scope_var.set(RerunScope("T-7", "abc", "v9"))
        try:
            with exporter.execution("a", trigger="email", task_id="T-7", version="v1") as run:
                assert (run.trigger, run.task_id, run.version, run.rerun_of) == ("rerun", "T-7~rerun-abc", "v9", "T-7")
            with exporter.execution("a") as second:
                assert second.task_id == "T-7~rerun-abc-2"
            with exporter.resume_execution(carrier) as resumed:
                assert (resumed.trigger, resumed.task_id, resumed.rerun_of) == ("email", "P-1", None)
        finally:
            rerun_scope_var.reset(token)
        with exporter.execution("a", trigger="email", task_id="T-8") as after:
            assert (after.trigger, after.task_id) == ("email", "T-8")
    spans = {(s.attributes or {}).get(sc.ATTR_TASK_ID): s.attributes or {} for s in cap.spans()}
    assert spans["T-7~rerun-abc"][sc.ATTR_TASK_RERUN_OF] == "T-7"
    assert spans["T-7~rerun-abc"][sc.ATTR_TASK_TRIGGER] == "rerun"
    assert sc.ATTR_TASK_RERUN_OF not in spans["T-8"]
    assert cap.value("agent_executions_finished_total", agent="a", trigger="rerun", status="completed") == 2
    assert cap.total("agent_exporter_dropped_total") == 0  # `rerun` is a known trigger: no warning


def test_a_case_over_its_timeout_fails_with_cause_timeout() -> None:
    """--timeout: an async case is cancelled, a sync one abandoned; both fail with cause timeout, the
    others run."""
    import asyncio
    import time

    async def slow_async(task: dict[str, Any]) -> None:
        with exporter.execution("a") as run:
            run.record_input(task)
            if task["n"] == 1:
                await asyncio.sleep(5)

    def slow_sync(task: dict[str, Any]) -> None:
        with exporter.execution("a"):
            if task["n"] == 1:
                time.sleep(5)

    cases = [{"id": f"T-{n}", "input": {"n": n}, "status": "completed"} for n in range(3)]
    for fn in (slow_async, slow_sync):
        t0 = time.monotonic()
        report = exporter.rerun(cases, fn, timeout=0.3)
        assert time.monotonic() - t0 < 4
        got = {c["id"]: (c["verdict"], c["after"]["status"], c["after"]["cause"]) for c in report.cases}
        assert got["T-1"] == ("regressed", "failed", "timeout"), fn.__name__
        assert got["T-0"] == got["T-2"] == ("still_passing", "completed", None)


def _priced_agent(tokens: int) -> Any:
    def run_case(case_input: Any) -> None:
        with exporter.execution("pricey", task_id="ignored") as run:
            with run.step("Answer") as step:
                step.record_usage(input_tokens=tokens, output_tokens=0, model="my-model")

    return run_case


def test_the_report_compares_cost_and_cost_increase_trips() -> None:
    """Cases recorded at $0.10 each, re-run at $0.15 (a price override): cost 0.2 -> 0.3, +50% trips >20%."""
    exporter.configure(metrics_port=None, registry=fresh_registry(), log_level="off",
                       prices={"my-model": {"input": 1.0, "output": 0.0}})  # fmt: skip
    cases = [{"id": f"C-{i}", "agent": "pricey", "input": {"i": i}, "status": "completed", "cost": 0.1}
             for i in range(2)]  # fmt: skip
    report = exporter.rerun(cases, _priced_agent(150_000), version="v2")  # 150k tokens x $1/M = $0.15
    after = [c["after"]["cost"] for c in report.to_dict()["cases"]]
    assert after == [pytest.approx(0.15), pytest.approx(0.15)]
    assert report.summary["cost_before"] == pytest.approx(0.2) and report.summary["cost_after"] == pytest.approx(0.3)
    (rule,) = report.check("cost_increase>20%")
    assert rule["tripped"] is True and rule["value"] == pytest.approx(0.5)
