"""Ending a task that the caller owns."""

from __future__ import annotations

import asyncio
from typing import Any

#: How long a cancelled task has before it is cancelled again.
RECANCEL_S = 2.0


async def cancel_and_join(*tasks: asyncio.Task[Any] | None, recancel_s: float = RECANCEL_S) -> None:
    """Cancel ``tasks`` and return once every one has ended, its outcome retrieved.

    A task is cancelled again every ``recancel_s`` until it ends: on Python 3.11,
    ``asyncio.wait_for`` (in nats-py, redis-py and the standard library) returns its inner
    result when that result races with the cancellation, and the task runs on as if it had
    never been cancelled (fixed in 3.12). A loop owning such a task should also check a flag of
    its own, so a swallowed cancellation ends it at its next turn."""
    owned = [t for t in tasks if t is not None]
    while pending := [t for t in owned if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=recancel_s)
    await asyncio.gather(*owned, return_exceptions=True)
