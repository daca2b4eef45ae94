"""The gateway's outermost middleware: a handler that raises CancelledError without having been
cancelled (a dependency's future cancelled under it) still answers, 1501 with Retry-After; the
same handler without the middleware drops the connection unanswered, as aiohttp does."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from contracts.errors import Unavailable
from services.gateway.errors_http import always_answer
from tests.httpserve import serving


async def _dependency_cancelled(_: web.Request) -> web.Response:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.cancel)  # as a library whose connection died
    await fut
    return web.json_response({"ok": True})


def _app(*middlewares: object) -> web.Application:
    app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
    app.router.add_post("/rpc", _dependency_cancelled)
    return app


async def test_a_cancelled_dependency_is_answered_unavailable() -> None:
    async with (
        serving(_app(always_answer)) as url,
        aiohttp.ClientSession() as s,
        s.post(f"{url}/rpc", data=b"{}") as resp,
    ):
        body = await resp.json()
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert body["error"]["code"] == Unavailable.code


async def test_without_it_the_connection_ends_unanswered() -> None:
    async with serving(_app()) as url, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await s.post(f"{url}/rpc", data=b"{}")
