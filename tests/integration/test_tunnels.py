"""``tool.tunnelConnect`` on a real daemon process over a real nats-server: bytes both ways,
half-close both ways, a closed port, back-pressure to the program, an abort."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from contracts.errors import PortUnreachable
from contracts.ports import TUNNEL_CONNECT, TunnelConnectParams
from controlplane.bus import Bus
from controlplane.calls.byte_stream_join import PlatformStream, join
from controlplane.calls.daemon_client import DaemonClient
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot
from tests.waiters import wait_until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


@asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on the loopback (the daemon's machine shares it in these tests)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A program that reads to its EOF, then answers the SHA-256 of what it read and closes."""
    h = hashlib.sha256()
    while chunk := await reader.read(65536):
        h.update(chunk)
    writer.write(h.hexdigest().encode())
    await writer.drain()
    writer.close()


async def tunnel(bus: Bus, mid: str, port: int) -> PlatformStream:
    opened = await DaemonClient(bus.nc, keys=KEY).call(
        mid, TUNNEL_CONNECT, TunnelConnectParams(port=port)
    )
    return await join(bus.nc, mid, opened.stream_id)


async def test_bytes_both_ways_and_half_close_both_ways(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    """The program reads to EOF (our end frame became its EOF), answers the digest of what it
    read, and closes; we read the answer to its end (its EOF became our end frame)."""

    daemon, _ = await boot(bus, spawn_daemon)
    payload = random.randbytes(5 * 1024 * 1024 + 3)
    async with listening(digest) as port, await tunnel(bus, daemon.machine_id, port) as stream:
        for at in range(0, len(payload), 100_000):
            await stream.send(payload[at : at + 100_000])
        await stream.end()
        answer = b"".join([c async for c in stream])
    assert answer == hashlib.sha256(payload).hexdigest().encode()


async def test_a_closed_port_is_port_unreachable(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    daemon, _ = await boot(bus, spawn_daemon)

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with listening(never) as port:
        pass  # the port was free a moment ago, and nothing listens on it now
    with pytest.raises(PortUnreachable) as refused:
        await tunnel(bus, daemon.machine_id, port)
    assert refused.value.data == {"port": port}


async def test_a_reader_that_stops_stops_the_program(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    """Nothing is read on the platform side: the daemon stops reading the socket once its
    credit is spent, so the program's writes block, far short of what it wants to send."""
    total = 64 * 1024 * 1024
    sent = [0]

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = b"x" * 65536
        while sent[0] < total:
            writer.write(block)
            await writer.drain()
            sent[0] += len(block)
        writer.close()

    daemon, _ = await boot(bus, spawn_daemon)
    async with listening(flood) as port, await tunnel(bus, daemon.machine_id, port) as stream:
        await wait_until(lambda: sent[0] > 0)
        last = -1
        while sent[0] != last:  # until the program is blocked: no progress in half a second
            last = sent[0]
            await asyncio.sleep(0.5)
        assert sent[0] < 16 * 1024 * 1024  # kernel buffers, one window, the daemon's reader
        received = 0
        async for chunk in stream:  # and reading resumes it, to the last byte
            received += len(chunk)
        assert received == total


async def test_an_abort_closes_the_programs_connection(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    closed = asyncio.Event()

    async def wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        closed.set()
        writer.close()

    daemon, _ = await boot(bus, spawn_daemon)
    async with listening(wait_for_close) as port:
        stream = await tunnel(bus, daemon.machine_id, port)
        await stream.send(b"partial")
        await stream.abort("the user left")
        await stream.aclose()
        await asyncio.wait_for(closed.wait(), 10)
