"""What one process's environment builds share between their callers: one build per content
hash at a time (a later caller joins it), one checkout per cache directory at a time. Made
once by the process that builds (services/provisioner/__main__.py) and passed in: builds still
running when it closes are cancelled and joined, none outlives the process's stop."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from base.keyed_locks import KeyedLocks
from base.tasks import OwnedTasks
from contracts.errors import ProviderError

#: Lines of a build's log a late caller hears first (and a failure carries).
TAIL_LINES = 30
Say = Callable[[str], None]


@dataclass
class _Shared:
    task: asyncio.Task[str] = field(init=False)
    listeners: list[Say] = field(default_factory=list)
    #: The log's last lines, for a caller that joins late.
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def tell(self, line: str) -> None:
        self.recent.append(line)
        for listener in list(self.listeners):
            listener(line)


class SharedBuilds:
    """``async with SharedBuilds() as shared:`` the builds of this process, by content hash,
    and ``checkouts``: the locks sources.checkout holds one cache directory by."""

    def __init__(self) -> None:
        self.checkouts = KeyedLocks()
        self._tasks = OwnedTasks("environment-builds", failed_event="environment.build_failed")
        self._inflight: dict[str, _Shared] = {}

    def __len__(self) -> int:
        """How many builds are in flight."""
        return len(self._inflight)

    async def build(self, digest: str, say: Say,
                    make: Callable[[Say], Coroutine[Any, Any, str]]) -> str:  # fmt: skip
        """The image ``make(tell)`` builds for ``digest``, run once however many call: a later
        caller joins the build, hears its last lines (up to ``TAIL_LINES``), then the rest of
        its log. The build outlives a caller that gives up (it finishes into the cache), not
        this holder. ProviderError once the holder is closing."""
        shared = self._inflight.get(digest)
        if shared is None:
            shared = _Shared()
            try:
                shared.task = self._tasks.spawn(make(shared.tell), digest=digest,
                                                name=f"env-build-{digest[:12]}")  # fmt: skip
            except RuntimeError:
                raise ProviderError("the environment builds of this host are stopping") from None
            self._inflight[digest] = shared
            shared.task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        elif shared.recent:
            say(f"environment {digest[:12]}: already building; its last {len(shared.recent)} "
                "line(s):")  # fmt: skip
            for line in shared.recent:
                say(line)
        shared.listeners.append(say)
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.listeners.remove(say)

    async def close(self) -> None:
        """Cancel the builds still running and join them."""
        await self._tasks.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
