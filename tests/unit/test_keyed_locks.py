"""base/keyed_locks.py: one holder per key at a time, two keys at once, nothing kept after."""

from __future__ import annotations

import asyncio

from base.keyed_locks import KeyedLocks


async def test_one_key_runs_one_holder_at_a_time_and_two_keys_run_at_once() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    both = asyncio.Event()

    async def hold(key: str) -> None:
        async with locks.held(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            if inside["a"] and inside["b"]:
                both.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside[key] -= 1

    await asyncio.gather(*(hold(k) for k in "abababab"))
    assert most == {"a": 1, "b": 1}
    assert both.is_set()
    assert len(locks) == 0


async def test_a_waiter_cancelled_and_a_holder_that_fails_leave_nothing_behind() -> None:
    locks = KeyedLocks()
    entered, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with locks.held("m"):
            entered.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.held("m"):
            raise AssertionError("a cancelled waiter never holds the lock")

    first = asyncio.create_task(holder())
    await asyncio.wait_for(entered.wait(), 5)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1
    second.cancel()
    release.set()
    await first
    (ended,) = await asyncio.gather(second, return_exceptions=True)
    assert isinstance(ended, asyncio.CancelledError)
    try:
        async with locks.held("m"):
            raise ValueError("boom")
    except ValueError:
        pass
    assert len(locks) == 0
