"""The one synchronous poll: ask until the answer is yes or the time is up.

    if not wait_until(lambda: not path.exists(), within_s=3.0, every_s=0.05): ...

For a caller that must not (or cannot) yield to an event loop: a lock file taken before the
daemon's loop runs, a cgroup emptied, a server's port or log line awaited while ``fleet up``
starts it. Asynchronous code waits with ``base.retry`` (``retry_until``, ``Retries``), on its
clock. Standard library only: a machine's supervisor imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    ready: Callable[[], T],
    *,
    within_s: float,
    every_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``ready()``'s first true result, asked at once and then every ``every_s`` for
    ``within_s`` of ``clock``'s time; once the time is up, its last (false) result. What
    ``ready`` raises ends the wait (a server that died while awaited)."""
    deadline = clock() + within_s
    while not (result := ready()):
        if clock() > deadline:
            return result
        sleep(every_s)
    return result
