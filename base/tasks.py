"""Tasks that an owner starts and joins: ``cancel_and_join`` for a task or two, ``OwnedTasks``
for a set of them (a server's per-request tasks, a hub's streams, a pool's starts), and
``finished`` for a cleanup that must end before its caller's cancellation goes on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: How long a cancelled task has before it is cancelled again.
RECANCEL_S = 2.0


async def cancel_and_join(*tasks: asyncio.Task[Any] | None, recancel_s: float = RECANCEL_S) -> None:
    """Cancel ``tasks`` and return once every one has ended, its outcome retrieved.

    A task is cancelled again every ``recancel_s`` until it ends: on Python 3.11,
    ``asyncio.wait_for`` (in nats-py, redis-py and the standard library) returns its inner
    result when that result races with the cancellation, and the task runs on as if it had
    never been cancelled (fixed in 3.12). A loop owning such a task should also check a flag of
    its own, so a swallowed cancellation ends it at its next turn. The calling task itself, if
    among them, is left alone: it cannot wait for its own end."""
    me = asyncio.current_task()
    owned = [t for t in tasks if t is not None and t is not me]
    while pending := [t for t in owned if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=recancel_s)
    await asyncio.gather(*owned, return_exceptions=True)


async def finished(aw: Awaitable[T]) -> T:
    """``aw``'s outcome. A cancellation that comes meanwhile, however often, goes on only once
    ``aw`` has finished (its own failure then logged, not raised): a cleanup (a killed child
    reaped, a helper container removed) is never left half done by a caller's shutdown, which
    may cancel it twice."""
    work = asyncio.ensure_future(aw)
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait({work})  # a cancelled wait leaves ``work`` running
        except asyncio.CancelledError:
            cancelled = True
    if not cancelled:
        return work.result()
    if not work.cancelled() and (failure := work.exception()) is not None:
        log.warning("task.cleanup_failed_while_cancelled", error=repr(failure))
    raise asyncio.CancelledError


class OwnedTasks:
    """A set of tasks owned by one object and joined when it closes (an async context manager,
    or ``close()``, which is safe to call twice).

    Closing refuses new tasks, lets the running ones finish for up to ``drain_s`` (``None``: as
    long as they take; ``0``: not at all), then cancels what is left and joins it
    (``cancel_and_join``): no task outlives its owner.

    Unlike ``asyncio.TaskGroup``, one task's failure does not cancel the others: these are a
    server's per-request tasks, and one request's failure is that request's alone. A task's
    unexpected exception is logged at the task's boundary as ``failed_event``, with the task's
    name and the context given to ``spawn``, and goes no further. A task that is cancelled is
    not a failure. The owner's own cancellation is never swallowed: cancelled while it
    drains, ``close`` still cancels and joins every task, then raises it."""

    def __init__(
        self, name: str, *, drain_s: float | None = 0.0, failed_event: str = "task.failed"
    ) -> None:
        self.name = name
        self.drain_s = drain_s
        self.failed_event = failed_event
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, work: Coroutine[Any, Any, T], *, name: str | None = None, **context: object
    ) -> asyncio.Task[T]:
        """Run ``work`` as a task of this set; ``RuntimeError`` once the set is closing."""
        if self._closed:
            work.close()
            raise RuntimeError(f"{self.name} is closed: no new task")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, context))
        return task

    def _done(self, context: dict[str, object], task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(self.failed_event, group=self.name, task=task.get_name(), error=repr(exc),
                      exc_info=exc, **context)  # fmt: skip

    async def close(self) -> None:
        """Drain for up to ``drain_s``, then cancel and join the rest."""
        self._closed = True
        try:
            if self._tasks and self.drain_s != 0:
                await asyncio.wait(set(self._tasks), timeout=self.drain_s)
        finally:
            await cancel_and_join(*self._tasks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
