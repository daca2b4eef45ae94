"""A byte stream's keepalive (base/byte_stream.py), a Ticker's rounds: it re-grants while the
stream is idle, stops re-granting once the link failed under it (the peer's timeout notices),
and its task ends with the stream's close."""

from __future__ import annotations

import asyncio

from base.byte_stream import ByteStream
from contracts.daemon import streams as s

ID = "k" * 32


def _keepalives() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"stream-{ID}"]


async def test_an_idle_stream_re_grants_and_its_keepalive_ends_with_its_close() -> None:
    frames: list[bytes] = []
    regranted = asyncio.Event()

    async def publish(frame: bytes) -> None:
        frames.append(frame)
        if len(frames) > 1:  # the first is start()'s own grant
            regranted.set()

    stream = await ByteStream(ID, publish, keepalive_s=0.01, peer_timeout_s=60).start()
    await asyncio.wait_for(regranted.wait(), timeout=5)
    assert s.decode_frame(frames[1]) == s.Credit(s.DEFAULT_WINDOW)
    assert _keepalives()
    await stream.aclose()
    assert not _keepalives()


async def test_after_a_keepalive_fails_on_the_link_no_more_are_sent() -> None:
    tries: list[bytes] = []

    async def publish(frame: bytes) -> None:
        tries.append(frame)
        if len(tries) > 1:
            raise OSError("the link is down")

    stream = ByteStream(ID, publish, keepalive_s=3600, peer_timeout_s=7200)
    await stream.start()
    await stream._keep_alive()  # one round: the link fails
    await stream._keep_alive()  # the next sends nothing
    assert len(tries) == 2
    assert stream.error is None  # the peer timeout's job, not the keepalive's
    await stream.aclose()
    assert not _keepalives()
