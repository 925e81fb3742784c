"""Soak (issue 7, point 3): threads and asyncio tasks run executions while a real Prometheus
scrapes /metrics every second.

Properties: no scrape fails; the books balance (started = finished + in progress, exactly once
the workload stops, and within the number of concurrent workers at every scrape, since one
execution's counters do not move atomically together); the resident set size is flat after
warm-up. The default run takes about 20 s of load; set AGENT_EXPORTER_SOAK_SECONDS=600 for a
longer one (the RSS bound stays the same, so a leak shows more clearly the longer it runs).
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import exporter
from exporter import testing
from tests.servers import PrometheusServer, free_port

SOAK_SECONDS = float(os.environ.get("AGENT_EXPORTER_SOAK_SECONDS", "20"))
THREADS = 4
TASKS = 16
RSS_GROWTH_BOUND_MB = 20.0


def rss_mb() -> float:
    """Current resident set size of this process, from /proc (ru_maxrss is a peak, not current)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_execution(rng: random.Random, i: int, sleep: Callable[[float], Any] | None = None) -> None:
    """A realistic mix: steps, tool calls (some failing), evaluations, tokens, pending, failures."""
    pending = "queued" if i % 7 == 0 else None
    try:
        with exporter.execution(f"agent-{i % 3}", trigger=rng.choice(["email", "webhook", "api"]),
                                task_id=f"t-{i}", pending=pending) as run:  # fmt: skip
            for n in range(rng.randint(1, 4)):
                with run.step(f"step-{n}", tool="gmail" if n % 2 else "custom_gpt") as step:
                    try:
                        with step.tool_call("salesforce"):
                            if rng.random() < 0.05:
                                raise TimeoutError("slow")
                    except TimeoutError:
                        pass
                    step.evaluate("quality", score=rng.random())
                    step.record_usage(input_tokens=rng.randint(1, 500), output_tokens=rng.randint(1, 200))
                    step.record_input({"n": n, "payload": "x" * rng.randint(0, 300)})
            if rng.random() < 0.1:
                raise ValueError("agent failure")
            if rng.random() < 0.05:
                run.cancel()
    except ValueError:
        pass


def thread_worker(stop: threading.Event, seed: int, counter: list[int]) -> None:
    rng = random.Random(seed)
    i = seed * 10_000_000
    while not stop.is_set():
        one_execution(rng, i)
        i += 1
        counter[0] += 1
        time.sleep(rng.random() * 0.004)  # agents wait on I/O (models, tools) most of the time


async def async_worker(stop: threading.Event, seed: int, counter: list[int]) -> None:
    rng = random.Random(seed)
    i = seed * 10_000_000
    while not stop.is_set():
        async with exporter.execution("agent-async", trigger="timer", task_id=f"a-{i}") as run:
            async with run.step("think") as step:
                await asyncio.sleep(rng.random() * 0.01)
                step.evaluate("quality", score=rng.random())
            async with run.step("act", tool="gmail") as step, step.tool_call("gmail"):
                await asyncio.sleep(rng.random() * 0.01)
        i += 1
        counter[0] += 1


def asyncio_thread(stop: threading.Event, counter: list[int]) -> None:
    async def main() -> None:
        await asyncio.gather(*(async_worker(stop, 1000 + k, counter) for k in range(TASKS)))

    asyncio.run(main())


@pytest.mark.servers
@pytest.mark.slow
def test_soak_under_real_scrapes(prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path) -> None:
    """Threads + asyncio under 1 s scrapes: no scrape error, books balanced, RSS flat."""
    port = free_port()
    registry = testing.fresh_registry()
    exporter.configure(
        "soak", metrics_port=port, metrics_addr="127.0.0.1", registry=registry,
        set_global_tracer_provider=False, log_level="error",
    )  # fmt: skip
    prom = prometheus_factory(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "agent-exporter", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            ],
        }
    )
    stop = threading.Event()
    counters = [[0] for _ in range(THREADS + 1)]
    workers = [threading.Thread(target=thread_worker, args=(stop, k, counters[k]), daemon=True) for k in range(THREADS)]
    workers.append(threading.Thread(target=asyncio_thread, args=(stop, counters[THREADS]), daemon=True))
    t_start = time.time()
    for w in workers:
        w.start()

    samples: list[tuple[float, float]] = []
    warmup = max(3.0, SOAK_SECONDS * 0.25)
    while time.time() - t_start < SOAK_SECONDS:
        time.sleep(0.5)
        samples.append((time.time() - t_start, rss_mb()))
    stop.set()
    for w in workers:
        w.join(30)
        assert not w.is_alive()
    t_end = time.time()
    executions = sum(c[0] for c in counters)

    # The books are exact in a scrape that began after the workload stopped (one exposition is
    # collected family by family, so a scrape that overlaps the last executions can be skewed).
    prom.wait_for(lambda: (prom.query_value('timestamp(up{job="agent-exporter"})') or 0) > t_end + 0.1, timeout=15)
    started = prom.query_value("sum(agent_executions_started_total)")
    finished = prom.query_value("sum(agent_executions_finished_total)")
    in_progress = prom.query_value("sum(agent_executions_in_progress)")
    assert (started, in_progress) == (finished, 0), f"started {started}, finished {finished}, running {in_progress}"
    assert started == executions

    window = f"{int(t_end - t_start) + 5}s"
    (target,) = prom.targets()
    assert target["health"] == "up" and target["lastError"] == "", target
    slowest = prom.query_value(f'max_over_time(scrape_duration_seconds{{job="agent-exporter"}}[{window}])')
    up = prom.query_range('up{job="agent-exporter"}', t_start - 5, time.time(), 1)
    assert prom.query_value(f'min_over_time(up{{job="agent-exporter"}}[{window}])') == 1.0, (
        f"a scrape failed; slowest scrape {slowest} s; up: {up}; target: {target}"
    )
    scrapes = prom.query_value(f'count_over_time(up{{job="agent-exporter"}}[{window}])')
    assert scrapes is not None and scrapes >= 0.6 * SOAK_SECONDS, f"only {scrapes} scrapes in {window}"
    # At every scrape the books balanced to within the executions moving at that instant.
    skew = prom.query_value(
        f"max_over_time((abs(sum(agent_executions_started_total) - sum(agent_executions_finished_total)"
        f" - sum(agent_executions_in_progress)))[{window}:1s])"
    )
    assert skew is not None and skew <= THREADS + TASKS, f"started - finished - in_progress reached {skew}"
    assert prom.query_value("sum(agent_exporter_dropped_total)") in (None, 0.0)

    after_warmup = [mb for t, mb in samples if t >= warmup]
    growth = max(after_warmup) - after_warmup[0]
    print(
        f"\nsoak: {executions} executions in {t_end - t_start:.1f} s ({executions / (t_end - t_start):.0f}/s), "
        f"{scrapes:.0f} scrapes, RSS {after_warmup[0]:.1f} -> {after_warmup[-1]:.1f} MB "
        f"(max growth after warm-up {growth:.1f} MB), max skew {skew:.0f}, slowest scrape {slowest * 1e3:.0f} ms"
    )
    assert growth < RSS_GROWTH_BOUND_MB, f"RSS grew {growth:.1f} MB after warm-up: {after_warmup}"
