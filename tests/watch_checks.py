"""What a watch of a machine's files must see, on any runtime (tests/integration/test_watch*.py):
``create``, ``write``, ``rename`` and ``remove`` of files an exec makes, as they happen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from contracts.daemon_watch import FileEvent
from contracts.gateway_files import WatchEnded
from fleet.client import FleetClient
from fleet.client.streams import WatchItem

WAIT_S = 30.0


@dataclass
class Watching:
    """A watch read in a task of its own: its items in order, as they come."""

    items: asyncio.Queue[WatchItem] = field(default_factory=asyncio.Queue)
    seen: list[FileEvent] = field(default_factory=list)

    async def next_event(self, timeout_s: float = WAIT_S) -> FileEvent:
        item = await asyncio.wait_for(self.items.get(), timeout_s)
        assert isinstance(item, FileEvent), f"the watch ended: {item}"
        self.seen.append(item)
        return item

    async def until(self, want: set[tuple[str, str]], timeout_s: float = WAIT_S) -> None:
        """Events until each (type, path) of ``want`` was seen."""
        async with asyncio.timeout(timeout_s):
            while not want <= {(e.type, e.path) for e in self.seen}:
                await self.next_event()

    async def ended(self, timeout_s: float = WAIT_S) -> WatchEnded:
        """The watch's end, past any event still coming."""
        async with asyncio.timeout(timeout_s):
            while True:
                item = await self.items.get()
                if isinstance(item, WatchEnded):
                    return item


@contextlib.asynccontextmanager
async def watching(client: FleetClient, mid: str, path: str, *, marker: str,
                   recursive: bool = False) -> AsyncIterator[Watching]:  # fmt: skip
    """``path`` (a directory of the home) watched; inside the block the watch is in place:
    the machine touches ``marker`` in it (again, each second) until the watch reports it."""
    w = Watching()

    async def read() -> None:
        async for item in client.machines_watch(mid, path, recursive=recursive):
            await w.items.put(item)

    task = asyncio.create_task(read())
    try:
        async with asyncio.timeout(WAIT_S):
            while not any(e.path.endswith("/" + marker) for e in w.seen):
                await client.exec(mid, ["touch", f"{path}/{marker}"])
                with contextlib.suppress(TimeoutError):
                    await w.next_event(timeout_s=1.0)
        yield w
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sees_an_execs_changes(client: FleetClient, mid: str) -> Watching:
    """A watch of ``~/w`` sees an exec's create, write, rename and remove, each with its path
    on the machine."""
    await client.exec(mid, ["mkdir", "-p", "w"])
    home = (await client.exec(mid, ["sh", "-c", "cd && pwd"])).stdout.strip()
    async with watching(client, mid, "w", marker="ready") as w:
        script = "cd w && echo one > a && echo two >> a && mv a b && rm b"
        done = await client.exec(mid, ["sh", "-c", script])
        assert done.exit_code == 0, done
        d = f"{home}/w"
        await w.until({("create", f"{d}/a"), ("write", f"{d}/a"), ("rename", f"{d}/a"),
                       ("create", f"{d}/b"), ("remove", f"{d}/b")})  # fmt: skip
        kinds = [(e.type, e.path) for e in w.seen if not e.path.endswith("/ready")]
        # In the order the kernel reported them.
        assert kinds.index(("create", f"{d}/a")) < kinds.index(("rename", f"{d}/a")) \
            < kinds.index(("remove", f"{d}/b")), kinds  # fmt: skip
        assert not any(e.is_dir for e in w.seen)
    return w
