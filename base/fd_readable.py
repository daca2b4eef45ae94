"""Waiting for a descriptor to become readable on the running loop, without a file object or a
transport: the caller keeps the number and closes it once (a pidfd, bwrap's info pipe)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self


class Readable:
    """Entered, the loop watches ``fd``; each ``wait`` returns once it is readable (again)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._ready.set)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.remove_reader(self.fd)

    async def wait(self) -> None:
        await self._ready.wait()
        self._ready.clear()
