"""Pre-fork worker pools with PROMETHEUS_MULTIPROC_DIR (issue 7, point 4).

prometheus_client picks its multiprocess value class when it is imported, so each scenario
runs in a fresh interpreter with the variable set before anything is imported; nothing leaks
into the other tests. Properties: counters and histogram counts are exact sums over the
workers; `agent_executions_in_progress` (livesum) sums the live workers; once a dead worker
is marked with `prometheus_client.multiprocess.mark_process_dead(pid)` (as the
prometheus_client docs say, e.g. from gunicorn's `child_exit` hook) its gauges are gone and its
counts stay; exemplars are absent (the mode cannot carry them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent

POOL_SCRIPT = textwrap.dedent(
    r'''
    import json, math, os, sys, time
    import multiprocessing as mp

    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]
    import exporter
    from exporter import testing
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
    from prometheus_client.parser import text_string_to_metric_families

    WORKERS, RUNS, HOLD = 4, 250, 3
    exporter.configure("mp", metrics_port=None, registry=testing.fresh_registry(), tracing=False, log_level="off")

    def scrape():
        """What /metrics serves in this mode: every process's files merged."""
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg

    def value(reg, name, **labels):
        total = None
        for fam in reg.collect():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total = (total or 0.0) + s.value
        return total

    def worker(i, ready, release):
        for k in range(RUNS):
            with exporter.execution("mp", trigger="api") as run:
                with run.step("s") as step:
                    step.evaluate("q", score=0.9)
                if k % 5 == 0:
                    run.fail("tool_error")
        held = [exporter.start_execution("mp", trigger="api") for _ in range(HOLD)]
        queued = exporter.start_execution("mp", trigger="api", pending="queued")
        ready.release()
        release.wait()
        if i == 0:
            os._exit(0)  # a crashed worker: its executions never end
        for run in held:
            run.end()
        queued.cancel()
        queued.end()

    ctx = mp.get_context("fork")
    ready, release = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=worker, args=(i, ready, release)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=60)
    out = {}
    reg = scrape()
    out["started_running"] = value(reg, "agent_executions_started_total", agent="mp")
    out["finished_running"] = value(reg, "agent_executions_finished_total", agent="mp")
    out["failures_running"] = value(reg, "agent_execution_failures_total", agent="mp", cause="tool_error")
    out["duration_count_running"] = value(reg, "agent_execution_duration_seconds_count", agent="mp")
    out["steps_running"] = value(reg, "agent_steps_total", agent="mp")
    out["in_progress_running"] = value(reg, "agent_executions_in_progress", agent="mp")
    out["pending_running"] = value(reg, "agent_executions_pending", agent="mp", reason="queued")
    out["oldest_running"] = value(reg, "agent_execution_pending_oldest_timestamp_seconds", agent="mp", reason="queued")
    out["objective"] = value(reg, "agent_objective", agent="mp", objective="completion_ratio")
    text = generate_latest(reg).decode()
    list(text_string_to_metric_families(text))
    out["exemplars"] = " # {" in generate_openmetrics(reg).decode()

    release.set()
    for p in procs:
        p.join(60)
    reg = scrape()
    out["started_after_exit"] = value(reg, "agent_executions_started_total", agent="mp")
    out["in_progress_before_mark"] = value(reg, "agent_executions_in_progress", agent="mp")
    for p in procs:
        multiprocess.mark_process_dead(p.pid)
    reg = scrape()
    out["in_progress_after_mark"] = value(reg, "agent_executions_in_progress", agent="mp")
    out["pending_after_mark"] = value(reg, "agent_executions_pending", agent="mp")
    oldest = value(reg, "agent_execution_pending_oldest_timestamp_seconds", agent="mp", reason="queued")
    out["oldest_after_mark"] = "inf" if oldest is not None and math.isinf(oldest) else oldest
    out["started_after_mark"] = value(reg, "agent_executions_started_total", agent="mp")
    out["finished_after_mark"] = value(reg, "agent_executions_finished_total", agent="mp")
    out["cancelled_after_mark"] = value(reg, "agent_executions_finished_total", agent="mp", status="cancelled")
    out["now"] = time.time()
    print(json.dumps(out))
    '''
)


def run_isolated(script: str, tmp_path: Path, timeout: float = 120) -> dict[str, object]:
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    path = tmp_path / "scenario.py"
    path.write_text(script)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fork_pool_totals_exact_and_dead_workers_gauges_gone(tmp_path: Path) -> None:
    """A fork pool of 4: exact totals, in-progress summed over live workers, the dead one's gauges gone."""
    workers, runs, hold = 4, 250, 3
    out = run_isolated(POOL_SCRIPT, tmp_path)
    # While every worker is alive and holds 3 running + 1 queued execution:
    assert out["finished_running"] == workers * runs
    assert out["started_running"] == workers * (runs + hold)  # a queued execution has not started
    assert out["failures_running"] == workers * runs / 5
    assert out["duration_count_running"] == workers * runs
    assert out["steps_running"] == workers * runs
    assert out["in_progress_running"] == workers * hold
    assert out["pending_running"] == workers
    assert 0 < out["oldest_running"] <= out["now"]  # livemin: the oldest queued start over workers
    assert out["objective"] == 0.95  # max over processes, not a sum
    assert out["exemplars"] is False
    # Worker 0 crashed holding 3 running executions and 1 queued; the others ended theirs.
    # A queued execution that is cancelled counts as started and finished (cancelled).
    assert out["started_after_exit"] == workers * (runs + hold) + (workers - 1)
    assert out["in_progress_before_mark"] == hold  # livesum does not know the pid is gone...
    assert out["in_progress_after_mark"] in (None, 0)  # ...until mark_process_dead(pid): gone
    assert not out["pending_after_mark"]
    assert out["oldest_after_mark"] in (None, "inf")  # none pending: absent, or +Inf (livemin skips it)
    # Counts survive the worker's death: started = finished + what was running when it died.
    assert out["started_after_mark"] == out["finished_after_mark"] + hold
    assert out["started_after_mark"] == out["started_after_exit"]
    assert out["finished_after_mark"] == workers * runs + (workers - 1) * (hold + 1)
    assert out["cancelled_after_mark"] == workers - 1


GUNICORN_APP = textwrap.dedent(
    r'''
    import os
    import exporter

    exporter.configure("web", metrics_port=None, tracing=False, log_level="off")
    metrics = exporter.metrics_app()
    held = []

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/work":
            with exporter.execution("web", trigger="webhook") as run, run.step("handle"):
                pass
        elif path == "/hold":
            held.append(exporter.start_execution("web", trigger="webhook"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [str(os.getpid()).encode()]
    '''
)

GUNICORN_CONF = textwrap.dedent(
    r'''
    from prometheus_client import multiprocess

    def child_exit(server, worker):
        multiprocess.mark_process_dead(worker.pid)
    '''
)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_gunicorn_workers_exact_totals_and_dead_worker_gauges_gone(tmp_path: Path) -> None:
    """gunicorn, 3 sync workers, metrics_app() on /metrics: exact totals; a killed worker's gauge goes."""
    pytest.importorskip("gunicorn")
    gunicorn = shutil.which("gunicorn") or pytest.skip("gunicorn command not on PATH")
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    (tmp_path / "mp_app.py").write_text(GUNICORN_APP)
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [gunicorn, "-w", "3", "-b", f"127.0.0.1:{port}", "-c", str(tmp_path / "gunicorn_conf.py"), "mp_app:app"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{base}/metrics") is not None, timeout=30)  # empty until a worker records
        requests = 300
        pids = {_get(f"{base}/work") for _ in range(requests)}
        metrics = _get(f"{base}/metrics")
        assert _sample(metrics, "agent_executions_started_total", agent="web") == requests
        assert _sample(metrics, "agent_executions_finished_total", agent="web", status="completed") == requests
        assert _sample(metrics, "agent_steps_total", agent="web") == requests

        holder = int(_get(f"{base}/hold"))
        assert _sample(_get(f"{base}/metrics"), "agent_executions_in_progress", agent="web") == 1
        os.kill(holder, signal.SIGKILL)  # the master's child_exit hook marks it dead and forks another
        wait_until(
            lambda: _sample(_get(f"{base}/metrics"), "agent_executions_in_progress", agent="web") == 0, timeout=20
        )
        metrics = _get(f"{base}/metrics")
        assert _sample(metrics, "agent_executions_started_total", agent="web") == requests + 1
        assert _sample(metrics, "agent_executions_finished_total", agent="web") == requests
        assert pids, "no worker answered"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()
