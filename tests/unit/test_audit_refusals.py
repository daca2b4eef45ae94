"""The refusal gate: a budget per address and overall, the rest counted once per period."""

from __future__ import annotations

from services.gateway.audit_refusals import MAX_ADDRESSES, OTHER, OVERALL_FACTOR, RefusalGate


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
