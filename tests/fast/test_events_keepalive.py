"""The events stream's keepalive (``GET /events``, services/gateway/sse.py) on a manual clock:
a stream with nothing to send writes a keepalive comment once ``KEEPALIVE_S`` has passed
since it last wrote, and an event sent meanwhile starts that time again. The stream over a
real gateway and NATS: tests/integration/test_gateway_events.py."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from nats.aio.msg import Msg

from services.gateway.access import EVERYWHERE, Caller
from services.gateway.events_hub import Subscriber
from services.gateway.sse import KEEPALIVE_S, _pump
from tests.fakes.clock import TICK, ManualClock

KEEPALIVE = b": keepalive\n\n"


class Connected(asyncio.Transport):
    """The client is still there."""

    def is_closing(self) -> bool:
        return False


class Written(web.StreamResponse):
    """What the stream wrote, frame by frame."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.frames.append(bytes(data))


def event(seq: int) -> Msg:
    """A live event as the hub hands it on: stream sequence ``seq``."""
    reply = f"$JS.ACK.S.C.1.{seq}.{seq}.1700000000000000000.0"
    return Msg(None, subject="machine.ready.m-0000000000000001", reply=reply, data=b"{}")  # type: ignore[arg-type]


async def test_a_quiet_stream_gets_a_keepalive_at_its_interval_and_an_event_restarts_it() -> None:
    clock = ManualClock()
    sub = Subscriber(Caller(token_id="admin"), None, EVERYWHERE)
    resp = Written()
    request = make_mocked_request("GET", "/events", transport=Connected())
    pump = asyncio.ensure_future(_pump(request, resp, sub, 0, clock))
    try:
        await clock.advance(KEEPALIVE_S - TICK)
        assert resp.frames == []  # not before its time
        await clock.advance(TICK)
        assert resp.frames == [KEEPALIVE]
        await clock.advance(KEEPALIVE_S / 2)
        sub.offer(event(7))  # something to send: the quiet time starts again
        await clock.advance(KEEPALIVE_S - TICK)
        assert resp.frames == [KEEPALIVE, b"id: 7\ndata: {}\n\n"]
        await clock.advance(TICK)
        assert resp.frames[2:] == [KEEPALIVE]
    finally:
        sub.ended.set()
        await asyncio.wait_for(pump, 10)
