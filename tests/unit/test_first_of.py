"""base.first.first_of: the first awaitable to finish wins; the others are cancelled and
awaited; the caller's cancellation is never swallowed."""

from __future__ import annotations

import asyncio

import pytest

from base.first import first_of
from tests.fakes.clock import ManualClock, settle


class Racer:
    """An awaitable's body that runs until told to return or raise, and says whether it was
    cancelled and whether it has finished."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False
        self.finished = False
        self._outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def run(self) -> object:
        self.started.set()
        try:
            outcome = await self._outcome
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.finished = True
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def end(self, outcome: object) -> None:
        self._outcome.set_result(outcome)


async def _race(*racers: Racer) -> asyncio.Task[tuple[int, object]]:
    task = asyncio.create_task(first_of(*(r.run() for r in racers)))  # type: ignore[call-overload]
    await asyncio.wait_for(asyncio.gather(*(r.started.wait() for r in racers)), 5)
    return task


@pytest.mark.parametrize("which", [0, 1, 2])
async def test_the_first_to_finish_wins_and_the_others_are_cancelled_and_awaited(
    which: int,
) -> None:
    racers = Racer(), Racer(), Racer()
    task = await _race(*racers)
    racers[which].end(f"won {which}")
    assert await asyncio.wait_for(task, 5) == (which, f"won {which}")
    for i, racer in enumerate(racers):
        assert racer.finished  # awaited: done by the time first_of returned
        assert racer.cancelled == (i != which)


async def test_a_winner_that_raised_raises_and_the_others_are_cancelled() -> None:
    a, b = Racer(), Racer()
    task = await _race(a, b)
    b.end(ConnectionResetError("the client left"))
    with pytest.raises(ConnectionResetError, match="the client left"):
        await asyncio.wait_for(task, 5)
    assert a.cancelled
    assert a.finished


async def test_a_tie_goes_to_the_earlier_argument() -> None:
    a, b = Racer(), Racer()
    task = await _race(a, b)
    b.end("second")
    a.end("first")  # both done before first_of runs again
    assert await asyncio.wait_for(task, 5) == (0, "first")


async def test_a_tie_goes_to_the_earlier_argument_even_when_it_raised() -> None:
    a, b = Racer(), Racer()
    task = await _race(a, b)
    b.end("second")
    a.end(ValueError("first"))
    with pytest.raises(ValueError, match="first"):
        await asyncio.wait_for(task, 5)


async def test_cancelling_the_caller_cancels_and_awaits_every_racer_and_propagates() -> None:
    racers = Racer(), Racer()
    task = await _race(*racers)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()  # not swallowed: the caller sees its own cancellation
    for racer in racers:
        assert racer.cancelled
        assert racer.finished


async def test_a_shielded_racer_outlives_a_race_it_lost() -> None:
    call = asyncio.create_task(asyncio.Event().wait())
    clock = ManualClock()
    race = asyncio.create_task(first_of(asyncio.shield(call), clock.sleep(1.0)))
    await clock.advance(1.0)
    assert await asyncio.wait_for(race, 5) == (1, None)
    await settle()
    assert not call.done()  # lost, yet still running
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_timer_on_a_manual_clock_wins_only_once_moved() -> None:
    clock = ManualClock()
    stop = asyncio.Event()
    race = asyncio.create_task(first_of(stop.wait(), clock.sleep(5.0)))
    await clock.advance(4.0)
    assert not race.done()
    assert clock.sleepers == 1
    await clock.advance(1.0)
    assert await asyncio.wait_for(race, 5) == (1, None)
    assert clock.sleepers == 0
