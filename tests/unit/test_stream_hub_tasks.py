"""The daemon's ByteStreamHub owns the tasks that serve its streams and joins them on close (the
real daemon's shutdown with open streams: tests/integration/test_bytestreams.py)."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import StreamAborted
from daemon import byte_stream_hub
from daemon.byte_stream_hub import ByteStreamHub


async def test_close_aborts_every_stream_and_waits_for_its_task_to_clean_up() -> None:
    hub = ByteStreamHub("m" * 8)
    stream = hub.open()
    cleaned = asyncio.Event()

    async def serve() -> None:
        try:
            await stream.receive()
        except StreamAborted:
            await asyncio.sleep(0)  # cleanup that takes a loop turn (a process reaped)
            cleaned.set()
        finally:
            await stream.aclose()

    hub.spawn(serve(), name="serve")
    assert hub.running_tasks == 1
    await asyncio.sleep(0)  # the task waits on its stream
    await hub.close()
    assert cleaned.is_set()  # close returned only once the task had cleaned up
    assert hub.running_tasks == 0
    assert hub.open_streams == 0


async def test_a_task_that_ignores_the_abort_is_cancelled_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(byte_stream_hub, "_JOIN_GRACE_S", 0.05)
    hub = ByteStreamHub("m" * 8)
    hub.open()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hub.spawn(stuck(), name="stuck")
    await asyncio.sleep(0)
    await asyncio.wait_for(hub.close(), 5)
    assert cancelled.is_set()
    assert hub.running_tasks == 0
    assert hub.open_streams == 0
