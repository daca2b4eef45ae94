"""An abort that comes after the peer's end frame does not void what the peer completed.

A daemon forgets a stream once it has sent its end frame, and answers any later frame of the
platform's (a credit granted while the platform drained its buffer) with an abort. Before this
rule, that abort raced the platform's reading: a download of 64 MiB failed now and then with
"no such stream on this machine" although every byte and the end frame had arrived.
"""

from __future__ import annotations

import asyncio

import pytest

from base.byte_stream import ByteStream
from contracts.daemon import streams as s
from contracts.errors import StreamAborted


async def _receiver() -> tuple[ByteStream, list[bytes]]:
    sent: list[bytes] = []

    async def publish(frame: bytes) -> None:
        sent.append(frame)

    return await ByteStream("b" * 32, publish, window=1024, chunk_size=512).start(), sent


async def test_buffered_data_and_the_end_survive_a_late_abort() -> None:
    rx, _ = await _receiver()
    await rx.feed(s.encode_data(0, b"first"))
    await rx.feed(s.encode_data(1, b"second"))
    await rx.feed(s.encode_end(2, 0))
    await rx.feed(s.encode_abort("no such stream on this machine"))
    assert [await rx.receive(), await rx.receive(), await rx.receive()] == [b"first", b"second",
                                                                             b""]  # fmt: skip
    assert rx.end_code == 0
    await rx.aclose()


async def test_a_reader_waiting_when_the_end_and_the_abort_come_gets_the_end() -> None:
    rx, _ = await _receiver()
    reading = asyncio.create_task(rx.receive())
    await asyncio.sleep(0)  # the reader waits for data
    await rx.feed(s.encode_data(0, b"last"))
    await rx.feed(s.encode_end(1, 0))
    await rx.feed(s.encode_abort("no such stream on this machine"))
    assert [await reading, await rx.receive()] == [b"last", b""]
    await rx.aclose()


async def test_an_abort_before_the_end_still_voids_the_buffer() -> None:
    rx, _ = await _receiver()
    await rx.feed(s.encode_data(0, b"partial"))
    await rx.feed(s.encode_abort("the daemon is stopping"))
    with pytest.raises(StreamAborted, match="stopping"):
        await rx.receive()
    await rx.aclose()
