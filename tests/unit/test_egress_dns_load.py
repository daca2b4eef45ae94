"""A machine's cap on its resolver: a burst, then its rate; never more at once than its
concurrency; caps that admit nothing are refused."""

from __future__ import annotations

import pytest

from providers.egress.dns_load import DnsCaps, Gate


def test_a_burst_then_the_rate() -> None:
    gate = Gate(DnsCaps(rate=10, burst=3, concurrency=100), now=0.0)
    assert [gate.enter(0.0) for _ in range(4)] == [True, True, True, False]
    assert not gate.enter(0.05)  # half a token came back
    assert gate.enter(0.1)  # a whole one
    assert not gate.enter(0.1)
    assert [gate.enter(10.0) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]  # no more than the burst


def test_no_more_at_once_than_its_concurrency() -> None:
    gate = Gate(DnsCaps(rate=1000, burst=1000, concurrency=2), now=0.0)
    assert [gate.enter(0.0) for _ in range(3)] == [True, True, False]
    gate.leave()
    assert gate.enter(0.0)
    assert not gate.enter(0.0)


@pytest.mark.parametrize("caps", [{"rate": 0}, {"rate": -1}, {"burst": 0}, {"concurrency": 0}])
def test_caps_that_admit_nothing_are_refused(caps: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        DnsCaps(**caps)  # type: ignore[arg-type]
