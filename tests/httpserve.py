"""A small aiohttp app served on a loopback port the kernel gives for a test (a stand-in server
or a proxy in front of the gateway), stopped when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

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


async def cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An ``asyncio.start_server`` handler whose answer's body ends before the length it
    announced: a gateway gone mid-answer."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    await writer.drain()
    writer.close()
