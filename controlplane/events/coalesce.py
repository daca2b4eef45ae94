"""Coalescing: many calls for one key within a short quiet period share a single run.

A handler of a burst of events (20 ``env.set`` in a row) calls ``run(key, work)`` for each; the
first starts a timer, the others join it, and once no call came for ``quiet_s`` (or ``max_s``
after the first) ``work`` runs once and every caller gets its outcome. The key is released
*before* ``work`` starts, so a call that arrives while it runs starts a new run: a change made
after ``work`` read its input is never lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from base.tasks import OwnedTasks


@dataclass(eq=False)
class _Pending:
    done: asyncio.Future[None]
    first: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    joined: int = 1


class Coalescer:
    def __init__(self, quiet_s: float, max_s: float) -> None:
        self._quiet_s = max(0.0, quiet_s)
        self._max_s = max(self._quiet_s, max_s)
        self._pending: dict[str, _Pending] = {}
        self._tasks = OwnedTasks("coalesce", failed_event="coalesce.failed")

    async def run(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        pending = self._pending.get(key)
        if pending is None:
            pending = _Pending(asyncio.get_running_loop().create_future())
            self._pending[key] = pending
            self._tasks.spawn(self._fire(key, pending, work), name=f"coalesce:{key}")
        else:
            pending.last = time.monotonic()
            pending.joined += 1
        # shield: one caller cancelled (a consumer stopping) must not cancel the others' run.
        await asyncio.shield(pending.done)

    async def _fire(self, key: str, p: _Pending, work: Callable[[], Awaitable[None]]) -> None:
        while True:  # a timer that each joining call pushes back (up to max_s): no event to wait on
            wait = min(p.last + self._quiet_s, p.first + self._max_s) - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        del self._pending[key]
        try:
            await work()
        except BaseException as exc:  # handed to every caller, who settles its own event
            p.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            p.done.set_result(None)
        finally:
            if not p.done.done():
                p.done.cancel()
