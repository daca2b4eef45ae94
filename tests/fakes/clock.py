"""A clock that moves only when a test moves it (``base.clock.Clock``): a time-dependent rule
is tested by ``advance``, never by sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

#: A step the clock moves exactly (a binary fraction, so a time just before a rule's and the
#: rule's own add up without rounding): a test advances to ``limit - TICK``, then ``TICK``.
TICK = 1 / 64


class ManualClock:
    """``now`` and ``monotonic`` move together, by ``advance`` only. ``sleep`` waits until the
    clock has been advanced past its end; sleepers wake in the order of their ends."""

    def __init__(self, start: float | None = None) -> None:
        # By default the whole second of now: what the product still dates by the system's
        # clock (a record, a Redis TTL) reads alike, and sums of whole intervals stay exact.
        self._now = float(int(time.time())) if start is None else start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        #: How many sleeps began: a woken loop has run its round once it sleeps again.
        self._slept = 0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (cancelled ones excluded)."""
        return sum(1 for *_, f in self._sleepers if not f.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        self._slept += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, waking each sleeper due by then in turn, at its own
        time, and letting it run until it waits again (so a loop sleeping twice in the span
        wakes twice)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        await settle()  # tasks started just now reach their sleeps first
        end = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= end:
            due, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, due)
            slept = self._slept
            future.set_result(None)
            await self._until_slept_since(slept)
        self._now = end
        await settle()

    async def _until_slept_since(self, slept: int, turns: int = 1000) -> None:
        """Let the woken task run until it sleeps again, or a bounded number of loop turns
        (a sleep that was not a loop's never sleeps again)."""
        for _ in range(turns):
            if self._slept > slept:
                return
            await asyncio.sleep(0)


async def settle(turns: int = 50) -> None:
    """Let woken tasks run a few loop turns (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)
