"""The platform's side of a machine's byte stream (see contracts.streams, base.byte_stream).

    opened = await daemons.call(machine_id, d.EXEC_PIPE, params)   # any stream-opening RPC
    async with await join(bus.nc, machine_id, opened.stream_id) as stream:
        await stream.send(b"input")
        async for chunk in stream: ...

``join`` subscribes to the machine's side before granting the first credit, so the daemon,
which sends nothing before it has credit, cannot send into the void. The subscription's own
pending limits are a second bound behind the credit: a machine that ignores its credit gets
its messages dropped by the client and its stream aborted (a missing chunk), not our memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from base.byte_stream import ByteStream
from contracts import streams as s, subjects

#: Frames (any size) a stream's subscription may queue before the client drops them.
_PENDING_MSGS = 65_536


#: Called on every chunk either way (the gateway's activity clock: traffic on a machine's
#: terminal, file transfer or tunnel keeps it from being stopped as idle).
OnTraffic = Callable[[], Awaitable[None]]


class PlatformStream(ByteStream):
    """A ByteStream that also owns its subscription (gone with ``aclose``)."""

    sub: Subscription | None = None
    on_traffic: OnTraffic | None = None
    #: False: only what the platform sends counts (a terminal's typing, not its output).
    traffic_both_ways: bool = True

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.on_traffic is not None:
            await self.on_traffic()
        await super().send(data)

    async def receive(self) -> bytes:
        chunk = await super().receive()
        if chunk and self.on_traffic is not None and self.traffic_both_ways:
            await self.on_traffic()
        return chunk

    async def aclose(self) -> None:
        await super().aclose()
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


async def join(
    nc: NATS,
    machine_id: str,
    stream_id: str,
    *,
    window: int = s.DEFAULT_WINDOW,
    chunk_size: int = s.DEFAULT_CHUNK,
    keepalive_s: float = s.KEEPALIVE_S,
    peer_timeout_s: float = s.PEER_TIMEOUT_S,
    on_traffic: OnTraffic | None = None,
    on_close: Callable[[ByteStream], None] | None = None,
) -> PlatformStream:
    """The platform's endpoint of ``machine_id``'s stream ``stream_id``, started; with
    ``on_traffic``, awaited on each chunk sent or received."""
    to_machine = subjects.stream_to_machine(machine_id, stream_id)

    async def publish(frame: bytes) -> None:
        await nc.publish(to_machine, frame)

    stream = PlatformStream(stream_id, publish, window=window, chunk_size=chunk_size,
                            keepalive_s=keepalive_s, peer_timeout_s=peer_timeout_s,
                            on_close=on_close)  # fmt: skip
    stream.on_traffic = on_traffic

    async def on_frame(msg: Msg) -> None:
        await stream.feed(msg.data)

    stream.sub = await nc.subscribe(
        subjects.stream_from_machine(machine_id, stream_id), cb=on_frame,
        pending_msgs_limit=_PENDING_MSGS, pending_bytes_limit=window + 2 * s.MAX_CHUNK,
    )  # fmt: skip
    try:
        await stream.start()  # after the SUB on the same connection: the server has our interest
    except BaseException:
        await stream.aclose()
        raise
    return stream
