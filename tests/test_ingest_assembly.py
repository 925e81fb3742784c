"""`exporter.ingest.assembly`: when a trace is complete, and what its budgets keep out."""

from __future__ import annotations

import pytest

from exporter.ingest.assembly import (
    LATE,
    SPANS_OVER_BUDGET,
    TRACE_OVER_BUDGET,
    TRACES_OVER_BUDGET,
    Assembler,
)
from exporter.spans.mapping import OTHER, SpanSummary


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def s(span_id: int, parent: int | None = 1) -> SpanSummary:
    return SpanSummary(span_id, parent, f"s{span_id}", OTHER, None, 0, 1)


def batch(tid: bytes, *spans: SpanSummary) -> dict[bytes, list[tuple[SpanSummary, bool]]]:
    return {tid: [(x, x.parent_id is None) for x in spans]}


T1, T2, T3 = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


def test_a_trace_is_due_grace_seconds_after_its_root() -> None:
    """Children held; the root starts the grace period; stragglers within it are included."""
    clock = Clock()
    a = Assembler(grace=2.0, timeout=60.0, clock=clock)
    a.add(batch(T1, s(2), s(3)))
    a.add(batch(T1, s(1, None)))
    clock.now += 1.9
    assert a.due() == []
    a.add(batch(T1, s(4)))
    clock.now += 0.2
    [(tid, spans)] = a.due()
    assert tid == T1 and sorted(x.span_id for x in spans) == [1, 2, 3, 4]
    assert a.open_traces == 0 and a.held == 0


def test_a_trace_without_root_is_assembled_at_the_timeout() -> None:
    """A trace whose root lives elsewhere is still derived, `timeout` seconds after its first span."""
    clock = Clock()
    a = Assembler(grace=1.0, timeout=30.0, clock=clock)
    a.add(batch(T1, s(2)))
    clock.now += 29.0
    assert a.due() == []
    clock.now += 1.0
    assert [tid for tid, _ in a.due()] == [T1]


def test_late_spans_are_counted_not_assembled_again() -> None:
    """Spans of an assembled trace (a retry, a straggler) are counted late and never make a second trace."""
    clock = Clock()
    a = Assembler(grace=0.0, timeout=30.0, clock=clock)
    a.add(batch(T1, s(1, None)))
    assert len(a.due()) == 1
    assert a.add(batch(T1, s(1, None), s(2))) == {LATE: 2}
    assert a.due() == [] and a.open_traces == 0
    clock.now += 31.0
    a.due()  # forgotten after the timeout: memory stays bounded
    assert a.add(batch(T1, s(1, None))) == {}


def test_budgets_count_what_they_keep_out() -> None:
    """Open traces, spans per trace and spans in all are capped; each overflow has its reason."""
    a = Assembler(max_traces=2, max_spans=5, max_spans_per_trace=3, clock=Clock())
    assert a.add(batch(T1, s(2), s(3), s(4), s(5))) == {TRACE_OVER_BUDGET: 1}
    assert a.add(batch(T2, s(2), s(3), s(4))) == {SPANS_OVER_BUDGET: 1}
    assert a.add(batch(T3, s(2))) == {TRACES_OVER_BUDGET: 1}
    assert a.held == 5 and a.open_traces == 2


def test_a_root_over_budget_still_completes_its_trace() -> None:
    """When the root cannot be held, its arrival still starts the grace period."""
    clock = Clock()
    a = Assembler(grace=0.0, max_spans_per_trace=1, clock=clock)
    a.add(batch(T1, s(2)))
    assert a.add(batch(T1, s(1, None))) == {TRACE_OVER_BUDGET: 1}
    assert [tid for tid, _ in a.due()] == [T1]


def test_everything_is_taken_at_shutdown() -> None:
    """`due(everything=True)` takes every held trace."""
    a = Assembler(clock=Clock())
    a.add(batch(T1, s(2)))
    a.add(batch(T2, s(1, None)))
    assert sorted(tid for tid, _ in a.due(everything=True)) == [T1, T2]


def test_bad_budgets_are_refused() -> None:
    """A zero budget or a grace longer than the timeout is a ValueError."""
    with pytest.raises(ValueError, match="max_traces"):
        Assembler(max_traces=0)
    with pytest.raises(ValueError, match="grace"):
        Assembler(grace=10.0, timeout=1.0)
