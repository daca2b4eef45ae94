"""A small aiohttp app served on a loopback port the kernel gives for a test (a stand-in server
or a proxy in front of the gateway), stopped when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


async def start_site(
    runner: web.AppRunner, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> int:
    """``runner`` (set up) served on ``host`` at a port the kernel gives (over TLS with
    ``ssl_context``); that port."""
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    return site.port


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` served until the block ends; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        yield f"http://127.0.0.1:{await start_site(runner)}"
    finally:
        await runner.cleanup()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """A request's head, its body (of a ``Content-Length``) read too: a server that closes
    with bytes unread resets the connection, which may drop what it wrote before."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    await reader.readexactly(int(length[1]) if length else 0)
    return head


async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An ``asyncio.start_server`` handler whose answer's body ends before the length it
    announced: a gateway gone mid-answer."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    await writer.drain()
    writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_serving(handler: Handler) -> AsyncIterator[str]:
    """``handler`` (an ``asyncio.start_server`` one: raw bytes, for answers no HTTP server
    would give) served on a loopback port; yields its base URL. The block's end waits for each
    connection's handler to end and closes its writer, so that none outlives the test's loop
    (a peer's reset ends a handler quietly)."""
    running: set[asyncio.Task[object]] = set()

    async def each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (task := asyncio.current_task()) is not None:
            running.add(task)
        try:
            with contextlib.suppress(ConnectionError):
                await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(each, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        await asyncio.wait_for(asyncio.gather(*running), 10)
