"""The one retry loop: a try, and on failure a wait by the one backoff rule (``backoff_s``)
before the next, bounded by a count of tries, a budget of time, both or neither.

    await retry(connect, on=(OSError, TimeoutError), backoff=Backoff(0.25, cap=5.0))

``retry`` tries again while the try raises one of ``on``; ``retry_until`` while it returns
something false (a lock another holds). A loop that is not one try repeated (a wake that polls
a status, then a daemon) pauses with ``Retries`` itself, so its waits grow, cap and end alike.

A budget bounds the whole, tries and waits, from the moment the ``Retries`` is made (like
``controlplane.events.consumer.Retry``'s ``budget_s`` bounds an event's deferrals): by default a
wait
that would end past it is not waited and the last failure stands; ``clip`` waits what is left
of it instead and tries once more at its end, for a caller that wants every chance it paid for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from base.backoff import backoff_s
from base.clock import SYSTEM_CLOCK, Clock

T = TypeVar("T")

#: Told of each retry before its wait: the failed try's number (1, 2, ...), the wait in
#: seconds, and why (the exception, or None for a false result): where a loop logs its event.
OnRetry = Callable[[int, float, BaseException | None], None]


@dataclass(frozen=True)
class Backoff:
    """``backoff_s``'s parameters: the first wait, the longest, and whether it is jittered."""

    base: float = 0.5
    cap: float = 30.0
    jitter: bool = True
    #: A schedule in place of the doubling (``backoff_s``): the waits after the first failed
    #: try, the second, ..., the last one repeated.
    steps: tuple[float, ...] = ()

    def wait_s(self, attempt: int) -> float:
        return backoff_s(attempt, base=self.base, cap=self.cap, jitter=self.jitter,
                         steps=self.steps)  # fmt: skip


class Retries:
    """The waits between the tries of one operation. ``tries``: how many in all (0: no
    count); ``budget_s``: how long in all, from now on ``clock`` (None: no budget);
    ``failed``: tries that already failed, for a loop resumed from a record (a webhook's
    delivery, whose tries outlive the process: its budget is then what is left of it)."""

    def __init__(
        self,
        backoff: Backoff,
        *,
        tries: int = 0,
        budget_s: float | None = None,
        clip: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        failed: int = 0,
    ) -> None:
        self.backoff = backoff
        self.tries = tries
        self.clip = clip
        self.clock = clock
        self.deadline = None if budget_s is None else clock.monotonic() + budget_s
        #: Tries that failed so far.
        self.failed = failed

    def next_wait_s(self) -> float | None:
        """Counts a failed try; the wait before the next one, or None: give up."""
        self.failed += 1
        if self.tries and self.failed >= self.tries:
            return None
        wait = self.backoff.wait_s(self.failed)
        if self.deadline is None:
            return wait
        left = self.deadline - self.clock.monotonic()
        if self.clip:
            return min(left, wait) if left > 0 else None
        return wait if wait <= left else None

    async def pause(self) -> bool:
        """After a failed try: wait before the next and True, or False (nothing waited): give
        up."""
        wait = self.next_wait_s()
        if wait is None:
            return False
        await self.clock.sleep(wait)
        return True


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    on: type[BaseException] | tuple[type[BaseException], ...],
    backoff: Backoff,
    tries: int = 0,
    budget_s: float | None = None,
    clip: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    on_retry: OnRetry | None = None,
) -> T:
    """``attempt()``'s result, tried again while it raises one of ``on`` (see the module);
    once the tries or the budget are spent, its last exception is raised. Any other exception
    ends it at once, and so does a cancellation, even one that ``on`` would catch."""
    waits = Retries(backoff, tries=tries, budget_s=budget_s, clip=clip, clock=clock)
    while True:
        try:
            return await attempt()
        except on as exc:
            wait = None if isinstance(exc, asyncio.CancelledError) else waits.next_wait_s()
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(waits.failed, wait, exc)
        await clock.sleep(wait)


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    tries: int = 0,
    budget_s: float | None = None,
    clip: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    on_retry: OnRetry | None = None,
) -> T:
    """``attempt()``'s first true result, tried again while it returns a false one; once the
    tries or the budget are spent, its last (false) result."""
    waits = Retries(backoff, tries=tries, budget_s=budget_s, clip=clip, clock=clock)
    while not (result := await attempt()):
        wait = waits.next_wait_s()
        if wait is None:
            break
        if on_retry is not None:
            on_retry(waits.failed, wait, None)
        await clock.sleep(wait)
    return result
