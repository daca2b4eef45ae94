"""A task whose cancellation is swallowed (Python 3.11's asyncio.wait_for does so when its
inner result races with the cancel) still ends when its owner exits: cancel_and_join cancels
again, and a Ticker's loop ends at its next turn."""

from __future__ import annotations

import asyncio
import sys

from base.tasks import cancel_and_join
from base.ticker import Ticker


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_join(task, recancel_s=0.05)
    assert task.cancelled()
    assert cancels == 2


async def test_outcomes_are_retrieved_and_none_is_skipped() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_join(failed, None)
    assert failed.done()
    assert not failed.cancelled()
    assert isinstance(failed.exception(), ValueError)


class RacingTicker(Ticker):
    """Each round waits, through wait_for, on a future the test completes as it exits."""

    name = "racing"
    failed_event = "racing.failed"

    def __init__(self) -> None:
        super().__init__(interval_s=0.01)
        self.waiting = asyncio.Event()
        self.result: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.swallowed = 0

    async def tick(self) -> None:
        self.waiting.set()
        await asyncio.wait_for(asyncio.shield(self.result), 30)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            self.swallowed += 1  # wait_for returned although this task was cancelled


class SwallowingTicker(Ticker):
    """A round that loses the cancellation it gets, whatever the Python."""

    name = "swallowing"
    failed_event = "swallowing.failed"

    def __init__(self) -> None:
        super().__init__(interval_s=0.01)
        self.waiting = asyncio.Event()

    async def tick(self) -> None:
        self.waiting.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return


async def test_a_ticker_whose_round_loses_the_cancel_still_exits() -> None:
    ticker = SwallowingTicker()
    async with asyncio.timeout(5):
        async with ticker:
            await ticker.waiting.wait()


async def test_a_ticker_exits_when_wait_for_races_its_cancel() -> None:
    ticker = RacingTicker()
    async with asyncio.timeout(5):
        async with ticker:
            await ticker.waiting.wait()
            ticker.result.set_result(1)  # the inner result and the exit's cancel: one turn
    if sys.version_info < (3, 12):
        assert ticker.swallowed == 1  # the race this test is about did happen
