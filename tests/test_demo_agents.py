"""The demo's agents, run in-process at a huge speed: their own data fits the library's defaults."""

from __future__ import annotations

import random
import threading

from exporter import semconv as sc
from exporter import testing
from exporter.demo.agents import MIX, Sim


def run_each_agent(times: int) -> None:
    """Each demo agent `times` times, seeded; their failures pass through, as the demo's workload sees them."""
    sim = Sim(speed=1e4, stop=threading.Event())  # fast, yet above max_duration's floor
    for _, agent in MIX.values():
        for n in range(times):
            try:
                agent(sim, random.Random(n), n)
            except Exception:  # noqa: BLE001, S110 - an execution the demo makes fail on purpose
                pass


def test_the_demos_inputs_and_outputs_fit_the_default_content_limit() -> None:
    """150 executions of each demo agent capture their inputs and outputs whole: no truncation warning."""
    with testing.capture() as cap:
        run_each_agent(150)
        assert cap.value("agent_exporter_dropped_total", reason="content_truncated") == 0
        sizes = [len(str(s.attributes[sc.ATTR_STEP_INPUT]).encode()) for s in cap.spans()
                 if sc.ATTR_STEP_INPUT in s.attributes]  # fmt: skip
    assert max(sizes) > 1000  # the invoice scans are still long: the test would see one too long


def test_the_demos_agents_declare_their_steps() -> None:
    """Each demo agent declares how many steps it takes, and no execution takes more."""
    with testing.capture() as cap:
        run_each_agent(30)
        spans = cap.spans()
    runs = [s for s in spans if s.attributes.get(sc.ATTR_GEN_AI_OPERATION_NAME) == sc.OPERATION_INVOKE_WORKFLOW]
    assert runs and all(s.attributes.get(sc.ATTR_TASK_STEPS_TOTAL) for s in runs)
    index = [s for s in spans if sc.ATTR_STEP_INDEX in s.attributes]
    by_trace = {s.context.trace_id: s.attributes[sc.ATTR_TASK_STEPS_TOTAL] for s in runs}
    assert all(s.attributes[sc.ATTR_STEP_INDEX] <= by_trace[s.context.trace_id] for s in index)
