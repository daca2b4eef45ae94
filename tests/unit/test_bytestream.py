"""The byte-stream endpoint and its frames, with two endpoints joined in memory (the real
NATS and daemon version: tests/integration/test_bytestreams.py)."""

from __future__ import annotations

import asyncio

import pytest

from base.byte_stream import ByteStream, StreamClosed
from contracts.daemon import streams as s
from contracts.errors import StreamAborted


class Wire:
    """Frames one endpoint publishes, fed to the other, in order."""

    def __init__(self) -> None:
        self.a: ByteStream
        self.b: ByteStream
        self.sent: list[bytes] = []

    def pair(self, **kw: int | float) -> tuple[ByteStream, ByteStream]:
        async def to_b(frame: bytes) -> None:
            self.sent.append(frame)
            await self.b.feed(frame)

        async def to_a(frame: bytes) -> None:
            await self.a.feed(frame)

        self.a = ByteStream("a" * 32, to_b, **kw)  # type: ignore[arg-type]
        self.b = ByteStream("a" * 32, to_a, **kw)  # type: ignore[arg-type]
        return self.a, self.b


def test_frames_round_trip() -> None:
    assert s.decode_frame(s.encode_data(7, b"abc")) == s.Data(7, b"abc")
    assert s.decode_frame(s.encode_credit(1 << 40)) == s.Credit(1 << 40)
    assert s.decode_frame(s.encode_end(3, -2)) == s.End(3, -2)
    assert s.decode_frame(s.encode_end(0)) == s.End(0, None)
    assert s.decode_frame(s.encode_abort("x" * 2000)) == s.Abort("x" * s.MAX_REASON)
    for bad in (b"", b"\x01", b"\x09" + bytes(8), s.encode_data(0, bytes(s.MAX_CHUNK + 1)),
                b"\x03" + bytes(8) + b"{"):  # fmt: skip
        with pytest.raises(s.FrameError):
            s.decode_frame(bad)


async def test_the_sender_stops_at_zero_credit_and_goes_on_as_the_receiver_drains() -> None:
    a, b = Wire().pair(window=4096, chunk_size=1024)
    await b.start()
    await a.start()
    send = asyncio.create_task(a.send(bytes(10_000)))
    await asyncio.sleep(0)  # let it spend what it has
    assert not send.done()
    assert b.buffered == 4096
    assert a.credit == 0
    got = 0
    while got < 10_000:
        got += len(await b.receive())
        assert b.buffered <= 4096
    await send
    await a.end(5)
    assert await b.receive() == b""
    assert b.end_code == 5
    for side in (a, b):
        await side.aclose()


async def test_a_missing_chunk_aborts_both_sides() -> None:
    w = Wire()
    a, b = w.pair()
    await b.start()
    await a.start()
    await b.feed(s.encode_data(1, b"skipped chunk 0"))
    with pytest.raises(StreamAborted, match="chunk 0 is missing"):
        await b.receive()
    with pytest.raises(StreamAborted, match="missing"):  # the abort reached the other side
        await a.send(b"more")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x07junk", "malformed"),
        (s.encode_end(4), "ended after 4 chunks"),
        (s.encode_data(0, bytes(4097)), "credit"),
    ],
)
async def test_a_peer_breaking_the_protocol_gets_the_stream_aborted(
    frame: bytes, error: str
) -> None:
    _, b = Wire().pair(window=4096, chunk_size=1024)
    await b.start()
    await b.feed(frame)
    with pytest.raises(StreamAborted, match=error):
        await b.receive()
    assert b.buffered == 0


async def test_after_end_this_side_cannot_send_but_still_receives() -> None:
    a, b = Wire().pair()
    await a.start()
    await b.start()
    await a.end()
    with pytest.raises(StreamClosed):
        await a.send(b"late")
    await b.send(b"reply")
    assert await a.receive() == b"reply"
    await b.aclose()  # not ended by b: an abort
    with pytest.raises(StreamAborted, match="closed by its owner"):
        await a.receive()


async def test_a_silent_peer_is_noticed_by_a_waiting_receiver() -> None:
    async def nowhere(frame: bytes) -> None:
        return None

    lone = ByteStream("c" * 32, nowhere, peer_timeout_s=0.2, keepalive_s=0.05)
    await lone.start()
    with pytest.raises(StreamAborted, match="silent"):
        await asyncio.wait_for(lone.receive(), 5)
    await lone.aclose()
    await lone.aclose()  # twice is fine
