"""base.retry: the one retry loop, on a manual clock (its waits are the one backoff rule's,
bounded by tries or a budget) and never swallowing a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from base.retry import Backoff, Retries, retry, retry_until
from tests.fakes.clock import ManualClock

#: Unjittered, so every wait is known: 1, 2, 4, 4, ...
STEADY = Backoff(base=1.0, cap=4.0, jitter=False)


class Flaky:
    """A try that fails ``failures`` times (raising ``error``, or returning False), then
    succeeds; it records the clock's time of each try."""

    def __init__(self, clock: ManualClock, failures: int, error: Exception | None = None) -> None:
        self.clock, self.failures, self.error = clock, failures, error
        self.at: list[float] = []

    async def __call__(self) -> str | bool:
        self.at.append(self.clock.monotonic())
        if len(self.at) <= self.failures:
            if self.error is not None:
                raise self.error
            return False
        return "ok"


def _offsets(clock: ManualClock, flaky: Flaky) -> list[float]:
    return [t - flaky.at[0] for t in flaky.at]


async def _run(
    clock: ManualClock, make: Callable[[], Coroutine[Any, Any, object]], span_s: float
) -> asyncio.Task[object]:
    task = asyncio.create_task(make())
    await clock.advance(span_s)
    return task


async def test_retry_waits_the_backoff_between_tries_and_returns_the_first_success() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=4, error=OSError("refused"))
    task = await _run(clock, lambda: retry(flaky, on=OSError, backoff=STEADY, clock=clock), 20)
    assert await asyncio.wait_for(task, 5) == "ok"
    assert _offsets(clock, flaky) == [0, 1, 3, 7, 11]  # waits 1, 2, 4, 4 (the cap)


async def test_retry_tells_on_retry_of_each_try_its_wait_and_why() -> None:
    clock = ManualClock()
    error = OSError("refused")
    told: list[tuple[int, float, BaseException | None]] = []
    flaky = Flaky(clock, failures=2, error=error)
    task = await _run(clock, lambda: retry(flaky, on=OSError, backoff=STEADY, clock=clock,
                                           on_retry=lambda *a: told.append(a)), 10)  # fmt: skip
    await asyncio.wait_for(task, 5)
    assert told == [(1, 1.0, error), (2, 2.0, error)]


async def test_retry_raises_the_last_error_once_its_tries_are_spent() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10, error=OSError("refused"))
    task = await _run(clock, lambda: retry(flaky, on=OSError, backoff=STEADY, tries=3,
                                           clock=clock), 60)  # fmt: skip
    with pytest.raises(OSError, match="refused"):
        await asyncio.wait_for(task, 5)
    assert _offsets(clock, flaky) == [0, 1, 3]


async def test_retry_lets_another_error_through_at_once() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10, error=ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await retry(flaky, on=OSError, backoff=STEADY, clock=clock)
    assert len(flaky.at) == 1


async def test_a_budget_gives_up_rather_than_wait_past_it() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10, error=OSError("refused"))
    task = await _run(clock, lambda: retry(flaky, on=OSError, backoff=STEADY, budget_s=6.5,
                                           clock=clock), 60)  # fmt: skip
    with pytest.raises(OSError, match="refused"):
        await asyncio.wait_for(task, 5)
    assert _offsets(clock, flaky) == [0, 1, 3]  # the next wait (4) would end at 7 > 6.5


async def test_a_clipped_budget_waits_what_is_left_and_tries_once_more_at_its_end() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10, error=OSError("refused"))
    task = await _run(clock, lambda: retry(flaky, on=OSError, backoff=STEADY, budget_s=6.5,
                                           clip=True, clock=clock), 60)  # fmt: skip
    with pytest.raises(OSError, match="refused"):
        await asyncio.wait_for(task, 5)
    assert _offsets(clock, flaky) == [0, 1, 3, 6.5]


async def test_retry_until_tries_again_while_false_and_returns_the_last_false() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10)
    task = await _run(clock, lambda: retry_until(flaky, backoff=STEADY, budget_s=3.0,
                                                 clock=clock), 60)  # fmt: skip
    assert await asyncio.wait_for(task, 5) is False
    assert _offsets(clock, flaky) == [0, 1, 3]


async def test_retry_until_returns_the_first_true_result() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=2)
    told: list[tuple[int, float, BaseException | None]] = []
    task = await _run(
        clock,
        lambda: retry_until(flaky, backoff=STEADY, clock=clock, on_retry=lambda *a: told.append(a)),
        10,
    )
    assert await asyncio.wait_for(task, 5) == "ok"
    assert told == [(1, 1.0, None), (2, 2.0, None)]


async def test_cancelling_the_caller_during_a_wait_propagates() -> None:
    clock = ManualClock()
    flaky = Flaky(clock, failures=10, error=OSError("refused"))
    task = asyncio.create_task(retry(flaky, on=OSError, backoff=STEADY, clock=clock))
    await clock.advance(0.5)
    assert clock.sleepers == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert clock.sleepers == 0
    assert len(flaky.at) == 1


async def test_a_cancellation_from_the_try_is_never_retried() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):  # retried, it would wait for ever: TimeoutError
        await asyncio.wait_for(
            retry(cancelled, on=BaseException, backoff=STEADY, clock=ManualClock()), 5
        )


async def test_retries_pause_counts_and_says_when_to_give_up() -> None:
    clock = ManualClock()
    waits = Retries(STEADY, budget_s=2.0, clip=True, clock=clock)
    paused = asyncio.create_task(waits.pause())
    await clock.advance(1.0)
    assert await asyncio.wait_for(paused, 5) is True
    paused = asyncio.create_task(waits.pause())
    await clock.advance(1.0)  # waits 1, not 2: what is left of the budget
    assert await asyncio.wait_for(paused, 5) is True
    assert await waits.pause() is False
    assert waits.failed == 3


def test_the_backoff_is_the_one_rule() -> None:
    assert [STEADY.wait_s(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 4.0]
    jittered = Backoff(base=1.0, cap=4.0)
    assert all(1.0 <= jittered.wait_s(2) <= 2.0 for _ in range(50))  # its upper half


def test_a_wait_after_thousands_of_tries_is_the_cap_not_an_overflow() -> None:
    """A steady poll (a resuming machine's, every 20 ms) makes thousands of tries within one
    budget: each wait is still the cap."""
    steady = Backoff(base=0.02, cap=0.02, jitter=False)
    assert [steady.wait_s(n) for n in (1, 1_100, 10_000)] == [0.02, 0.02, 0.02]


def test_a_schedule_of_steps_gives_each_wait_then_repeats_its_last() -> None:
    schedule = Backoff(steps=(5.0, 300.0, 1800.0), jitter=False)
    assert [schedule.wait_s(n) for n in range(1, 6)] == [5.0, 300.0, 1800.0, 1800.0, 1800.0]
    jittered = Backoff(steps=(10.0,))
    assert all(5.0 <= jittered.wait_s(3) <= 10.0 for _ in range(50))


def test_retries_resumed_from_a_record_go_on_from_its_count_and_what_is_left() -> None:
    clock = ManualClock()
    schedule = Backoff(steps=(1.0, 10.0, 100.0), jitter=False)
    assert Retries(schedule, failed=1, clock=clock).next_wait_s() == 10.0
    # 50 s of a 60 s budget are spent: the third wait (100) is clipped to the 10 left.
    assert Retries(schedule, failed=2, budget_s=10.0, clip=True, clock=clock).next_wait_s() == 10
    assert Retries(schedule, failed=3, budget_s=0.0, clip=True, clock=clock).next_wait_s() is None
