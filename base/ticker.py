"""A periodic round in the background (an async context manager): the sweeps and heartbeats
that run beside a service's consumers, the daemon's heartbeat, a warm pool's keeper."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import structlog

from base.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from base.tasks import cancel_and_join

log = structlog.get_logger(__name__)


class Ticker:
    """Runs ``tick`` every ``interval_s`` while entered, and at once after ``wake`` (and at
    entry, with ``at_once``). A round that raises is logged as ``failed_event`` and the next
    round runs: a sweep must outlive one bad round (a store failing over). Exit cancels the
    task and waits for it. The interval is ``clock``'s time (a test's manual clock); a
    callable ``interval_s`` is asked before each wait.

    A subclass sets ``name`` and ``failed_event`` and defines ``tick``; or a plain Ticker is
    given them and the round (``tick``)."""

    #: The task's name, and the log event of a failed round.
    name: str
    failed_event: str

    def __init__(
        self, interval_s: float | Callable[[], float], clock: Clock = SYSTEM_CLOCK, *,
        tick: Callable[[], Awaitable[object]] | None = None, name: str = "",
        failed_event: str = "", at_once: bool = False,
    ) -> None:  # fmt: skip
        self.interval_s = interval_s
        self.clock = clock
        self._tick = tick
        if name:
            self.name = name
        if failed_event:
            self.failed_event = failed_event
        self._at_once = at_once
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        #: Ends the loop even if a cancellation was swallowed (see cancel_and_join).
        self._stopping = False

    async def tick(self) -> object:
        """One round."""
        assert self._tick is not None, "a Ticker needs a tick: given, or its own"
        return await self._tick()

    async def __aenter__(self) -> Self:
        self._stopping = False
        if self._at_once:
            self._woken.set()
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        self._stopping = True
        await cancel_and_join(task)

    def wake(self) -> None:
        """Run the next round now, not at the end of the interval (one under way when woken is
        followed by another: it may have read before what woke it)."""
        self._woken.set()

    async def _run(self) -> None:
        while not self._stopping:
            interval = self.interval_s
            await sleep_or_event(self.clock, interval() if callable(interval) else interval,
                                 self._woken)  # fmt: skip
            if self._stopping:  # no round after the exit began, even with the cancel lost
                return
            self._woken.clear()
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - task boundary: the next round retries
                log.warning(self.failed_event, error=repr(exc))
