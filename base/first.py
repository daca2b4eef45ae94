"""The one race of awaitables: the first to finish wins, the others are cancelled and joined.

    which, msg = await first_of(queue.get(), stop.wait(), clock.sleep(timeout_s))
    if which == 0: ...  # a message; 1: stopped; 2: timed out

Every awaitable has ended, its outcome retrieved, when ``first_of`` returns or raises: a loser
is cancelled and awaited (``cancel_and_join``), so nothing it holds (a queue's getter, a
semaphore's waiter, a pending accept) outlives the race. Ties go to the earlier argument, so a
caller lists what it must not lose first (a message before a timer). A winner that raised
raises here. A cancellation of the caller is never swallowed: every awaitable is cancelled and
joined, then it propagates. An awaitable that must outlive the race (a call still under way
while a keepalive timer wins) is passed shielded: ``asyncio.shield(task)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, cast, overload

from base.tasks import cancel_and_join

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def first_of(a: Awaitable[A], b: Awaitable[B], /) -> tuple[int, A | B]: ...
@overload
async def first_of(
    a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /
) -> tuple[int, A | B | C]: ...
async def first_of(*aws: Awaitable[Any]) -> tuple[int, Any]:
    """The winner's index among ``aws`` and its result (see the module)."""
    futures = [asyncio.ensure_future(aw) for aw in aws]
    winner: asyncio.Future[Any] | None = None
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        winner = next(f for f in futures if f.done())
    finally:
        # cancel_and_join needs only what a Future has (cancel, done, wait, gather).
        losers = cast(list["asyncio.Task[Any]"], [f for f in futures if f is not winner])
        await cancel_and_join(*losers)
    return futures.index(winner), winner.result()
