"""The manual clock (tests/fakes/clock.py) and the Ticker's period on it: time moves only when
the test moves it, so a period is checked exactly and nothing sleeps."""

from __future__ import annotations

import asyncio

import pytest

from base.clock import SYSTEM_CLOCK, sleep_or_event, within
from base.ticker import Ticker
from tests.fakes.clock import TICK, ManualClock, settle


class Rounds(Ticker):
    name = "rounds"
    failed_event = "rounds.failed"

    def __init__(self, interval_s: float, clock: ManualClock, fail_first: bool = False) -> None:
        super().__init__(interval_s, clock)
        self.at: list[float] = []
        self._fail = fail_first

    async def tick(self) -> None:
        self.at.append(self.clock.now())
        if self._fail:
            self._fail = False
            raise RuntimeError("a bad round")


async def test_sleepers_wake_in_the_order_of_their_ends_and_not_before() -> None:
    clock = ManualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 5), ("early", 2))]
    await settle()
    assert clock.sleepers == 2
    await clock.advance(1.9)
    assert woke == []
    await clock.advance(3.1)
    assert woke == [("early", 102.0), ("late", 105.0)]
    assert clock.now() == clock.monotonic() == 105.0
    await asyncio.gather(*tasks)
    with pytest.raises(ValueError, match="does not go back"):
        await clock.advance(-1)


async def test_the_ticker_runs_once_per_period_of_its_clock() -> None:
    clock = ManualClock(start=0.0)
    async with Rounds(10.0, clock) as rounds:
        await clock.advance(9.0)
        assert rounds.at == []  # not before its period
        await clock.advance(1.0)
        assert rounds.at == [10.0]
        await clock.advance(25.0)  # two more periods within: each at its own time
        assert rounds.at == [10.0, 20.0, 30.0]
        rounds.wake()  # at once, no time passing
        await settle()
        assert rounds.at == [10.0, 20.0, 30.0, 35.0]
        await clock.advance(10.0)  # the period counts from the woken round
        assert rounds.at == [10.0, 20.0, 30.0, 35.0, 45.0]
    assert clock.sleepers == 0  # exit cancelled its wait


async def test_a_failed_round_is_followed_by_the_next_one() -> None:
    clock = ManualClock(start=0.0)
    async with Rounds(1.0, clock, fail_first=True) as rounds:
        await clock.advance(2.0)
    assert rounds.at == [1.0, 2.0]


async def test_sleep_or_event_returns_on_the_event_and_cancels_the_sleep() -> None:
    clock, event = ManualClock(start=0.0), asyncio.Event()
    waiting = asyncio.create_task(sleep_or_event(clock, 60.0, event))
    await settle()
    assert not waiting.done()
    event.set()
    await asyncio.wait_for(waiting, timeout=5)
    assert clock.sleepers == 0
    assert clock.now() == 0.0
    # And the system clock's sleep returns at once for a zero wait.
    await asyncio.wait_for(sleep_or_event(SYSTEM_CLOCK, 0, asyncio.Event()), timeout=5)


async def test_a_plain_ticker_runs_its_round_at_entry_and_asks_its_interval_each_time() -> None:
    """The daemon's heartbeat and a warm pool's keeper: a round at once, then one per interval,
    the interval asked before each wait (a pool holds its refill for a while after a take)."""
    clock = ManualClock(start=0.0)
    at: list[float] = []
    intervals = iter([60.0, 5.0, 2.0, 3.0])  # the first wait is cut short: at_once

    async def tick() -> None:
        at.append(clock.now())

    ticker = Ticker(lambda: next(intervals), clock, tick=tick, name="beat",
                    failed_event="beat.failed", at_once=True)  # fmt: skip
    async with ticker:
        await settle()
        assert at == [0.0]  # at entry, before any time passed
        await clock.advance(7.0)
        assert at == [0.0, 5.0, 7.0]
    assert ticker.name == "beat"
    assert clock.sleepers == 0


async def test_within_times_out_at_its_limit_of_the_clock_and_cancels_the_work() -> None:
    clock, cancelled = ManualClock(start=0.0), asyncio.Event()

    async def forever() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    waiting = asyncio.create_task(within(clock, 10.0, forever()))
    await clock.advance(10.0 - TICK)
    assert not waiting.done()
    await clock.advance(TICK)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiting, timeout=5)
    assert cancelled.is_set()
    assert clock.sleepers == 0


async def test_within_answers_what_ends_in_time_or_its_error_and_leaves_no_sleeper() -> None:
    clock, done = ManualClock(start=0.0), asyncio.Event()

    async def answer() -> str:
        await done.wait()
        return "answer"

    waiting = asyncio.create_task(within(clock, 10.0, answer()))
    await clock.advance(5.0)
    done.set()
    assert await asyncio.wait_for(waiting, timeout=5) == "answer"
    assert clock.sleepers == 0

    async def fails() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await within(clock, 10.0, fails())
