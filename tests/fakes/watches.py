"""``tool.watch`` in memory: a real ``ByteStream`` (base/byte_stream.py) on the fast world's
NATS, whose lines (and end) the test sends as a machine's daemon would. Without ``nc`` (a test
that did not give one), a watch is refused as any other in-memory byte stream is."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from base.byte_stream import ByteStream
from contracts.bus import subjects
from contracts.daemon.watch import WATCH_CHUNK, WATCH_WINDOW, WatchOpened, WatchParams
from contracts.errors import NotSupported


@dataclass
class FakeWatches:
    machine_id: str
    home: str
    #: The fast world's NATS (``world.bus.fake_nc``), set by a test that watches.
    nc: Any = None
    #: Each watch's stream, the daemon's side, in the order they were opened.
    streams: list[ByteStream] = field(default_factory=list)
    params: list[WatchParams] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch(self, p: WatchParams, _: None) -> WatchOpened:
        nc = self.nc
        if nc is None:
            raise NotSupported("an in-memory machine has no byte streams")
        sid = secrets.token_hex(16)
        out = subjects.stream_from_machine(self.machine_id, sid)

        async def publish(frame: bytes) -> None:
            await nc.publish(out, frame)

        stream = ByteStream(sid, publish, window=WATCH_WINDOW, chunk_size=WATCH_CHUNK)

        async def frame(msg: Any) -> None:
            await stream.feed(msg.data)

        await nc.subscribe(subjects.stream_to_machine(self.machine_id, sid), cb=frame)
        await stream.start()
        self.streams.append(stream)
        self.params.append(p)
        self.opened.set()
        path = p.path if p.path.startswith("/") else f"{self.home}/{p.path.removeprefix('~/')}"
        return WatchOpened(stream_id=sid, path=path, watched_dirs=1)

    async def close(self) -> None:
        for stream in self.streams:
            await stream.aclose()
