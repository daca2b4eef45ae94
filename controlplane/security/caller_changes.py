"""Changes to what a caller may do, as one process knows of them: a write through its own Store
(a user's role or state, their instance roles, a session ended, a token revoked), or a notice
of a write elsewhere. A gateway keeps the callers it resolved against ``version`` and cuts
what they hold open when told (services.gateway: caller_cache, revocation, caller_notices).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Announce = Callable[[], Awaitable[None]]


class CallerChanges:
    def __init__(self) -> None:
        #: Counted up at each change: what was read before it is stale.
        self.version = 0
        self._watchers: list[Callable[[], None]] = []
        self._announce: Announce | None = None

    def heard(self) -> None:
        """A change this process learnt of (or wrote): stale here at once, watchers told."""
        self.version += 1
        for watcher in tuple(self._watchers):
            watcher()

    async def written(self) -> None:
        """A change written through this process's Store, after the write: ``heard``, then
        announced to the other processes (awaited, so that they are told before the writer's
        caller is answered)."""
        self.heard()
        if self._announce is not None:
            await self._announce()

    @contextmanager
    def watching(self, watcher: Callable[[], None]) -> Iterator[None]:
        """``watcher`` is called at each change while inside."""
        self._watchers.append(watcher)
        try:
            yield
        finally:
            self._watchers.remove(watcher)

    @contextmanager
    def announcing(self, announce: Announce) -> Iterator[None]:
        """``announce`` tells the other processes of each change written here while inside
        (it must not raise: the write is done whatever becomes of the notice)."""
        self._announce = announce
        try:
            yield
        finally:
            self._announce = None
