"""The refusal gates: a budget per address (or per known caller) and overall, the rest counted
once per period."""

from __future__ import annotations

from services.gateway.auth.audit_refusals import (
    MAX_ADDRESSES,
    OTHER,
    OVERALL_FACTOR,
    CallerRefusals,
    RefusalGate,
    Summary,
    merged,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_address_has_its_budget_and_the_rest_is_counted() -> None:
    clock = Clock()
    gate = RefusalGate(3, clock=clock)
    assert [gate.admit("env.list", "10.0.0.1") for _ in range(5)] == [True] * 3 + [False] * 2
    assert gate.admit("env.list", "10.0.0.2")  # another address: its own budget
    assert gate.take_counts() == {"count": 2, "methods": {"env.list": 2},
                                  "addresses": {"10.0.0.1": 2}}  # fmt: skip
    assert gate.take_counts() is None  # taken: nothing until the next refusal past budget
    clock.now += 20.0  # a third of a minute: one more
    assert gate.admit("auth.signIn", "10.0.0.1")
    assert not gate.admit("auth.signIn", "10.0.0.1")


def test_many_addresses_share_the_overall_budget_and_are_counted_in_bounds() -> None:
    gate = RefusalGate(1, clock=Clock())
    admitted = [gate.admit("env.list", f"a{i}") for i in range(MAX_ADDRESSES + 100)]
    assert sum(admitted) == OVERALL_FACTOR
    counts = gate.take_counts()
    assert counts is not None
    assert counts["count"] == MAX_ADDRESSES + 100 - OVERALL_FACTOR
    assert len(counts["addresses"]) == MAX_ADDRESSES + 1  # the rest together, as OTHER
    assert counts["addresses"][OTHER] == 100 - OVERALL_FACTOR


def test_no_budget_means_no_bound() -> None:
    gate = RefusalGate(0, clock=Clock())
    assert all(gate.admit("env.list", "10.0.0.1") for _ in range(1000))


def test_each_caller_has_its_budget_and_the_rest_is_counted_by_caller() -> None:
    clock = Clock()
    callers = CallerRefusals(2, clock=clock)
    admitted = [callers.admit("u-1", "cron.set", 1003, "t-1") for _ in range(5)]
    assert admitted == [True] * 2 + [False] * 3
    assert callers.admit("u-2", "env.set", 1003, "t-2")  # another caller: its own budget
    callers.count("u-2", "env.set", 1001, "t-2")  # counted, not an entry (a full buffer)
    assert callers.take_counts() == {
        "u-1": Summary(3, {"cron.set": 3}, {1003: 3}, {"t-1": 3}),
        "u-2": Summary(1, {"env.set": 1}, {1001: 1}, {"t-2": 1}),
    }
    assert callers.take_counts() == {}  # taken
    clock.now += 30.0  # half a minute: one more for u-1
    assert callers.admit("u-1", "cron.set", 1003, "t-1")
    assert not callers.admit("u-1", "cron.set", 1003, "t-1")


def test_many_callers_share_the_overall_budget_and_are_counted_in_bounds() -> None:
    callers = CallerRefusals(1, clock=Clock())
    admitted = [callers.admit(f"u-{i}", "env.set", 1003, None) for i in range(MAX_ADDRESSES + 50)]
    assert sum(admitted) == OVERALL_FACTOR
    counts = callers.take_counts()
    assert len(counts) == MAX_ADDRESSES + 1  # the rest together, as OTHER
    assert sum(s.count for s in counts.values()) == MAX_ADDRESSES + 50 - OVERALL_FACTOR


def test_summaries_past_the_room_left_are_one_together_counting_every_caller() -> None:
    callers = CallerRefusals(1, clock=Clock())
    for i, n in enumerate((5, 3, 2, 2)):
        for _ in range(n + 1):  # the first is an entry of its own
            callers.admit(f"u-{i}", "env.set", 1003, None)
    got = callers.take_summaries(3)
    assert [(actor, s.count) for actor, s in got] == [("u-0", 5), ("u-1", 3), (OTHER, 4)]
    assert got[-1][1].callers == {"u-2": 2, "u-3": 2}
    assert got[-1][1].params()["callers"] == {"u-2": 2, "u-3": 2}
    assert merged(dict(got)).count == 12
