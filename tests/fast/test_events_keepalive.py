"""The gateway's streams' keepalives on a manual clock: the events stream (``GET /events``,
services/gateway/streams/events.py) and a streamed exec (``POST /rpc/stream``, exec_stream.py). A
stream with nothing to send writes a keepalive comment once its ``KEEPALIVE_S`` has passed since it
last wrote, and what it sends meanwhile starts that time again. The streams over a real
gateway and NATS: tests/integration/test_gateway_events.py, test_exec_stream.py. And a code
run's stream: the events that trail its answer are waited for ``TAIL_WAIT_S``, no longer."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from nats.aio.msg import Msg

from services.gateway.auth import EVERYWHERE, Caller
from services.gateway.streams import codemode as codemode_stream, exec_stream
from services.gateway.streams.events import KEEPALIVE_S, _pump
from services.gateway.streams.events_hub import Subscriber
from services.gateway.streams.sse import SseStream
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

    async def write_eof(self, data: bytes = b"") -> None:
        self.frames.append(b"<eof>")


def event(seq: int) -> Msg:
    """A live event as the hub hands it on: stream sequence ``seq``."""
    reply = f"$JS.ACK.S.C.1.{seq}.{seq}.1700000000000000000.0"
    return Msg(None, subject="machine.ready.m-0000000000000001", reply=reply, data=b"{}")  # type: ignore[arg-type]


async def test_a_quiet_stream_gets_a_keepalive_at_its_interval_and_an_event_restarts_it() -> None:
    clock = ManualClock()
    sub = Subscriber(Caller(token_id="admin"), None, EVERYWHERE)
    resp = Written()
    request = make_mocked_request("GET", "/events", transport=Connected())
    stream = SseStream(resp, clock, KEEPALIVE_S)
    pump = asyncio.ensure_future(_pump(request, stream, sub, 0, clock))
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


async def test_a_quiet_exec_stream_gets_a_keepalive_at_its_interval_output_restarts_it() -> None:
    clock, every = ManualClock(), exec_stream.KEEPALIVE_S
    resp, output = Written(), asyncio.Queue[bytes]()
    finish = asyncio.Event()

    async def command() -> bytes | None:
        await finish.wait()
        return b'{"exitCode": 0}'

    call = asyncio.create_task(command())
    stream = SseStream(resp, clock, every)
    pump = asyncio.ensure_future(exec_stream._pump(stream, output, call, clock))
    await clock.advance(every - TICK)
    assert resp.frames == []  # not before its time
    await clock.advance(TICK)
    assert resp.frames == [KEEPALIVE]
    await clock.advance(every / 2)
    output.put_nowait(b"hello")  # output: the quiet time starts again
    await clock.advance(every - TICK)
    assert resp.frames == [KEEPALIVE, b"event: output\ndata: hello\n\n"]
    await clock.advance(TICK)
    assert resp.frames[2:] == [KEEPALIVE]
    finish.set()
    await asyncio.wait_for(pump, 10)
    assert resp.frames[3:] == [b'event: result\ndata: {"exitCode": 0}\n\n', b"<eof>"]


async def test_a_runs_trailing_events_are_waited_for_until_its_tail_wait_not_longer() -> None:
    clock, tail = ManualClock(), codemode_stream.TAIL_WAIT_S
    resp, events = Written(), asyncio.Queue[bytes]()
    drain = asyncio.ensure_future(codemode_stream._drain(SseStream(resp, clock), events, clock))
    events.put_nowait(b'{"type": "stdout", "seq": 4}')  # trailing, not the run's last
    await clock.advance(tail - TICK)
    assert not drain.done()
    assert resp.frames == [b'event: stdout\nid: 4\ndata: {"type": "stdout", "seq": 4}\n\n']
    await clock.advance(TICK)
    await asyncio.wait_for(drain, 10)
    assert len(resp.frames) == 1
