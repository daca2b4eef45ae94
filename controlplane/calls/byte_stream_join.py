"""The platform's side of a machine's byte stream (see contracts.daemon.streams, base.byte_stream).

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

#: Frames (any size) a stream's subscription may queue before the client drops them.
from contracts.bus import subjects
from contracts.daemon import streams as s

_PENDING_MSGS = 65_536


#: Called on every chunk either way (the gateway's activity clock: traffic on a machine's
#: terminal, file transfer or tunnel keeps it from being stopped as idle).
OnTraffic = Callable[[], Awaitable[None]]


class PlatformStream(ByteStream):
    """A ByteStream of the platform's side of ``machine_id``'s stream on ``nc``: ``start``
    subscribes to the machine's side before granting the first credit; the subscription goes
    with ``aclose``. ``on_traffic``: awaited on each chunk sent, and on each received unless
    ``traffic_both_ways`` is False (only what the platform sends counts: a terminal's typing,
    not its output)."""

    def __init__(
        self,
        nc: NATS,
        machine_id: str,
        stream_id: str,
        *,
        window: int = s.DEFAULT_WINDOW,
        chunk_size: int = s.DEFAULT_CHUNK,
        keepalive_s: float = s.KEEPALIVE_S,
        peer_timeout_s: float = s.PEER_TIMEOUT_S,
        on_traffic: OnTraffic | None = None,
        traffic_both_ways: bool = True,
        on_close: Callable[[ByteStream], None] | None = None,
    ) -> None:
        to_machine = subjects.stream_to_machine(machine_id, stream_id)

        async def publish(frame: bytes) -> None:
            await nc.publish(to_machine, frame)

        super().__init__(stream_id, publish, window=window, chunk_size=chunk_size,
                         keepalive_s=keepalive_s, peer_timeout_s=peer_timeout_s,
                         on_close=on_close)  # fmt: skip
        self._nc = nc
        self._from_machine = subjects.stream_from_machine(machine_id, stream_id)
        self._on_traffic = on_traffic
        self._traffic_both_ways = traffic_both_ways
        self._sub: Subscription | None = None

    async def start(self) -> PlatformStream:
        """Subscribed to the machine's side, then the first credit granted (on the same
        connection, after the SUB: the server has our interest before the daemon may send)."""
        if self._sub is not None:  # started already (``join``), entered now
            await super().start()
            return self
        self._sub = await self._nc.subscribe(
            self._from_machine, cb=self._on_frame, pending_msgs_limit=_PENDING_MSGS,
            pending_bytes_limit=self._window + 2 * s.MAX_CHUNK,
        )  # fmt: skip
        try:
            await super().start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _on_frame(self, msg: Msg) -> None:
        await self.feed(msg.data)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        if self._on_traffic is not None:
            await self._on_traffic()
        await super().send(data)

    async def receive(self) -> bytes:
        chunk = await super().receive()
        if chunk and self._on_traffic is not None and self._traffic_both_ways:
            await self._on_traffic()
        return chunk

    async def aclose(self) -> None:
        await super().aclose()
        sub, self._sub = self._sub, None
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
    traffic_both_ways: bool = True,
    on_close: Callable[[ByteStream], None] | None = None,
) -> PlatformStream:
    """The platform's endpoint of ``machine_id``'s stream ``stream_id``, started (see
    ``PlatformStream``)."""
    stream = PlatformStream(nc, machine_id, stream_id, window=window, chunk_size=chunk_size,
                            keepalive_s=keepalive_s, peer_timeout_s=peer_timeout_s,
                            on_traffic=on_traffic, traffic_both_ways=traffic_both_ways,
                            on_close=on_close)  # fmt: skip
    return await stream.start()
