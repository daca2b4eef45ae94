"""A small aiohttp app served on a free loopback port for a test (a stand-in server or a
proxy in front of the gateway), stopped when the block ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from fleet.embedded import free_port


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` served until the block ends; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
