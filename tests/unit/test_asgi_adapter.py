"""services/gateway/mcp/asgi.py: an ASGI app served from aiohttp, over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.gateway.mcp.asgi import Receive, Scope, Send, serve_asgi


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body in pieces, then streams it back in two parts with two cookies."""
    body = b""
    while True:
        msg = await receive()
        body += msg["body"]
        if not msg["more_body"]:
            break
    headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
               (b"transfer-encoding", b"chunked")]  # fmt: skip
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    state = scope["state"]["who"]
    await send({"type": "http.response.body", "body": f"{state}:{scope['method']}:".encode(),
                "more_body": True})  # fmt: skip
    await send({"type": "http.response.body", "body": body + scope["query_string"]})


async def silent(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise ValueError("a bug in the app")


@pytest.fixture
async def base() -> AsyncIterator[str]:
    apps: dict[str, Any] = {"/echo": echo, "/silent": silent, "/broken": broken}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_asgi(apps[request.path], request, {"who": "alice"})

    app = web.Application()
    app.router.add_route("*", "/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_streamed_body_and_response(base: str) -> None:
    body = b"x" * (300 * 1024)  # more than one read

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 50_000):
            yield body[i : i + 50_000]

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/echo?q=1", data=chunks()) as resp,
    ):
        assert resp.status == 201
        assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
        assert await resp.read() == b"alice:POST:" + body + b"q=1"


async def test_an_app_that_answers_nothing_or_fails_is_a_500(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for name in ("silent", "broken"):
            async with http.get(f"{base}/{name}") as resp:
                assert resp.status == 500
                assert "a bug" not in await resp.text()  # the app's text stays in the log
