"""base.relay: two pumps run as one (the gateway's relays over the in-memory wire:
tests/unit/test_gateway_relays.py)."""

from __future__ import annotations

import asyncio

import pytest

from base.relay import relay


class Pump:
    """A pump that runs until told to return or raise, and says whether it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False
        self.finished = False
        self._outcome: asyncio.Future[BaseException | None] | None = None

    async def run(self) -> str:
        self._outcome = asyncio.get_running_loop().create_future()
        self.started.set()
        try:
            error = await self._outcome
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.finished = True
        if error is not None:
            raise error
        return "done"

    async def end(self, error: BaseException | None = None) -> None:
        await self.started.wait()
        assert self._outcome is not None
        self._outcome.set_result(error)


async def _start(a: Pump, b: Pump, until: str) -> asyncio.Task[None]:
    task = asyncio.create_task(relay(a.run(), b.run(), until=until))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(a.started.wait(), b.started.wait()), 5)
    return task


@pytest.mark.parametrize("which", [0, 1])
async def test_either_ends_when_one_pump_returns_and_cancels_the_other(which: int) -> None:
    pumps = Pump(), Pump()
    task = await _start(*pumps, "either")
    await pumps[which].end()
    await asyncio.wait_for(task, 5)
    assert pumps[1 - which].cancelled
    assert pumps[1 - which].finished
    assert not pumps[which].cancelled


async def test_both_waits_for_the_second_pump_after_the_first_returned() -> None:
    a, b = Pump(), Pump()
    task = await _start(a, b, "both")
    await a.end()
    await asyncio.sleep(0)  # one loop turn: a relay that stopped here would be done
    assert not task.done()
    assert not b.cancelled
    await b.end()
    await asyncio.wait_for(task, 5)


async def test_first_goes_on_when_the_second_returns_and_ends_with_the_first() -> None:
    a, b = Pump(), Pump()
    task = await _start(a, b, "first")
    await b.end()  # a pipe's input ended: its output goes on
    await asyncio.sleep(0)
    assert not task.done()
    assert not a.cancelled
    await a.end()
    await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("until", ["either", "both", "first"])
@pytest.mark.parametrize("which", [0, 1])
async def test_a_failing_pump_ends_the_relay_with_its_error(until: str, which: int) -> None:
    pumps = Pump(), Pump()
    task = await _start(*pumps, until)
    await pumps[which].end(ConnectionResetError("the client left"))
    with pytest.raises(ConnectionResetError, match="the client left"):
        await asyncio.wait_for(task, 5)
    assert pumps[1 - which].cancelled
    assert pumps[1 - which].finished


async def test_a_stalled_relay_is_stopped_by_cancelling_its_caller_and_says_so() -> None:
    a, b = Pump(), Pump()
    task = await _start(a, b, "both")  # neither pump ever moves: a stall
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()  # not swallowed: the caller sees its own cancellation
    assert a.cancelled
    assert b.cancelled
    assert a.finished
    assert b.finished


async def test_when_both_fail_at_once_the_first_pumps_error_is_raised() -> None:
    async def boom(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match=r"^a$"):
        await asyncio.wait_for(relay(boom("a"), boom("b"), until="both"), 5)


async def test_a_pump_cancelled_by_someone_else_counts_as_returned() -> None:
    async def cancelled_from_inside() -> None:
        raise asyncio.CancelledError

    b = Pump()
    task = asyncio.create_task(relay(cancelled_from_inside(), b.run(), until="either"))
    await asyncio.wait_for(task, 5)
    assert not task.cancelled()
    assert b.cancelled
