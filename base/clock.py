"""The one way the time-dependent rules read time: a ``Clock`` passed in, the system's by
default. Tests pass a manual one (tests/fakes/clock.py) and move it on instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch: what records and expiries are written in."""

    def monotonic(self) -> float:
        """Seconds that only move forward: what intervals are measured in."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    """The host's clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


#: Stateless, so one is shared: the default of every constructor that takes a clock.
SYSTEM_CLOCK: Clock = SystemClock()


async def sleep_or_event(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Return after ``seconds`` of ``clock``'s time, or as soon as ``event`` is set."""
    # Imported here: first_of's task joining logs (structlog), and a `fleet` command imports
    # the clock (through base.retry) without logging anything.
    from base.first import first_of

    await first_of(clock.sleep(seconds), event.wait())


async def within(clock: Clock, seconds: float, aw: Awaitable[T]) -> T:
    """``aw``'s result; TimeoutError (``aw`` cancelled) once ``seconds`` of ``clock``'s time
    pass first: ``asyncio.timeout`` on a clock a test can move."""
    work = asyncio.ensure_future(aw)
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(sleeper, work, return_exceptions=True)
    if work.cancelled() and sleeper.done() and not sleeper.cancelled():
        raise TimeoutError(f"not done within {seconds:g}s")
    return work.result()
