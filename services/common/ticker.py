"""A periodic round in the background (an async context manager): the sweeps and heartbeats
that run beside a service's consumers."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

import structlog

from core.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from core.tasks import cancel_and_join

log = structlog.get_logger(__name__)


class Ticker(ABC):
    """Runs ``tick`` every ``interval_s`` while entered, and at once after ``wake``. A round
    that raises is logged as ``failed_event`` and the next round runs: a sweep must outlive one
    bad round (a store failing over). Exit cancels the task and waits for it. The interval is
    ``clock``'s time (a test's manual clock)."""

    #: The task's name, and the log event of a failed round.
    name: str
    failed_event: str

    def __init__(self, interval_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        #: Ends the loop even if a cancellation was swallowed (see cancel_and_join).
        self._stopping = False

    @abstractmethod
    async def tick(self) -> object:
        """One round."""

    async def __aenter__(self) -> Self:
        self._stopping = False
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
            await sleep_or_event(self.clock, self.interval_s, self._woken)
            if self._stopping:  # no round after the exit began, even with the cancel lost
                return
            self._woken.clear()
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - task boundary: the next round retries
                log.warning(self.failed_event, error=repr(exc))
