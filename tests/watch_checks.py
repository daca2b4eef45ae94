"""What a watch of a machine's files must see, on any runtime (tests/integration/test_watch*.py):
``create``, ``write``, ``rename`` and ``remove`` of files an exec makes, as they happen. And a
client that reads none of its stream (``unread_stream``), with what the gateway's streams hold
for it meanwhile, as tracemalloc traces it (``traced_streams``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yarl

from contracts.daemon.watch import FileEvent
from contracts.gateway.files import WatchEnded
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


@dataclass
class UnreadStream:
    """A streamed answer its client has read nothing of yet."""

    reader: asyncio.StreamReader

    async def read_all(self, timeout_s: float = WAIT_S) -> bytes:
        """All of it, to its end: the HTTP answer as it came (headers, chunked body)."""
        return await asyncio.wait_for(self.reader.read(), timeout_s)


@contextlib.asynccontextmanager
async def unread_stream(base: str, token: str, method: str,
                        params: dict[str, Any]) -> AsyncIterator[UnreadStream]:  # fmt: skip
    """``method`` with ``params`` POSTed to ``base``'s ``/rpc/stream`` by a client that reads
    none of the answer until it asks (``read_all``): a receive buffer of 4 KiB and a reader that
    takes in 2 KiB, so the gateway's writes stop at once and what comes next is held by the
    gateway."""
    url = yarl.URL(base)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    data = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    writer.write(b"POST /rpc/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s"
                 % (url.raw_authority.encode(), token.encode(), len(data), data))  # fmt: skip
    try:
        yield UnreadStream(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _held_by_streams() -> int:
    """What the gateway's streams' code allocated and still holds, as tracemalloc traced it:
    anything allocated with a frame of services/gateway/streams/ on its stack (a held part's
    bytes, its place in the queue), but not what is on its way to the client's socket (the
    writer's buffer: sse.py's write, one at a time)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*/services/gateway/streams/*", all_frames=True),
        tracemalloc.Filter(False, "*/services/gateway/streams/sse.py", all_frames=True),
    ])  # fmt: skip
    return sum(stat.size for stat in snapshot.statistics("filename"))


@contextlib.contextmanager
def traced_streams() -> Iterator[Callable[[], int]]:
    """tracemalloc on for the block (what was allocated before it is not traced); inside, the
    function answers what the gateway's streams hold now of what they allocated since."""
    tracemalloc.start(16)
    try:
        yield _held_by_streams
    finally:
        tracemalloc.stop()
