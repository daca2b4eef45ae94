"""A preview's errors to a browser (services/gateway/previews/preview.py, ``error_page``): a page
load (a GET or HEAD that takes HTML, the waking page's rule) of a port nothing listens on gets an
HTML page that says so, with the error table's status and headers; an API client keeps the JSON-RPC
body. The real preview app on the fast layer's world, served on a loopback port; with a real
machine: tests/integration/test_ports.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from contracts.errors import PortUnreachable, Unauthorized
from contracts.ports import TunnelConnectParams
from services.gateway.auth import Caller
from services.gateway.errors_http import error_page
from services.gateway.http import make_app
from tests.fast.conftest import World

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ADMIN = Caller(token_id="t-admin")


@asynccontextmanager
async def preview_listener(world: World) -> AsyncIterator[str]:
    """The gateway's preview listener on the world (the bearer token ``good`` is the admin)."""

    async def resolve(token: str) -> Caller | None:
        return ADMIN if token == "good" else None

    async with AsyncExitStack() as es:
        apps = make_app(world.gateway_resolving(resolve))
        server = await es.enter_async_context(TestServer(apps.previews, host="127.0.0.1"))
        yield str(server.make_url("")).rstrip("/")


async def nothing_listens(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ready machine whose daemon answers a tunnel as the real one does when nothing listens
    on the port (daemon/ports/tunnel.py)."""
    m = await world.ready_machine()

    async def refused(p: TunnelConnectParams, _: None) -> Any:
        said = f"nothing accepts connections on port {p.port} in the machine (127.0.0.1: refused)"
        raise PortUnreachable(said, data={"port": p.port})

    monkeypatch.setattr(world.daemons[m.id], "no_stream", refused)
    return m.id


async def test_a_browser_gets_a_page_saying_nothing_listens(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await nothing_listens(world, monkeypatch)
    async with preview_listener(world) as base, aiohttp.ClientSession() as s:
        url = f"{base}/machines/{mid}/ports/3000/"
        headers = {"Authorization": "Bearer good", "Accept": BROWSER}
        async with s.get(url, headers=headers) as r:
            page = await r.text()
            assert r.status == PortUnreachable.http_status
            assert r.content_type == "text/html"
            assert r.headers["Cache-Control"] == "no-store"
            assert "default-src 'none'" in r.headers.getall("Content-Security-Policy")
            assert "frame-ancestors 'self'" in r.headers.getall("Content-Security-Policy")
        assert "Nothing is listening on this port" in page
        assert "nothing accepts connections on port 3000" in page
        assert "jsonrpc" not in page
        async with s.head(url, headers=headers) as r:
            assert (r.status, r.content_type) == (PortUnreachable.http_status, "text/html")


@pytest.mark.parametrize("accept", ["*/*", "application/json", ""])
async def test_an_api_client_keeps_the_json_rpc_error(
    world: World, monkeypatch: pytest.MonkeyPatch, accept: str
) -> None:
    mid = await nothing_listens(world, monkeypatch)
    async with preview_listener(world) as base, aiohttp.ClientSession() as s:
        url = f"{base}/machines/{mid}/ports/3000/"
        headers = {"Authorization": "Bearer good", "Accept": accept}
        async with s.get(url, headers=headers) as r:
            assert r.status == PortUnreachable.http_status
            assert (await r.json())["error"]["code"] == PortUnreachable.code


async def test_a_form_post_from_a_browser_keeps_the_json_rpc_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    mid = await nothing_listens(world, monkeypatch)
    async with preview_listener(world) as base, aiohttp.ClientSession() as s:
        url = f"{base}/machines/{mid}/ports/3000/"
        headers = {"Authorization": "Bearer good", "Accept": BROWSER}
        async with s.post(url, headers=headers, data=b"x") as r:
            assert r.content_type == "application/json"


async def test_a_browser_with_no_cookie_gets_a_page_with_the_401s_headers(world: World) -> None:
    m = await world.ready_machine()
    async with preview_listener(world) as base, aiohttp.ClientSession() as s:
        url = f"{base}/machines/{m.id}/ports/3000/"
        async with s.get(url, headers={"Accept": BROWSER}) as r:
            page = await r.text()
            assert (r.status, r.content_type) == (401, "text/html")
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="fleetd"'
    assert "sign in" in page


def test_the_page_escapes_what_it_shows() -> None:
    resp = error_page(Unauthorized('<script>alert("x")</script> & co'))
    assert resp.text is not None
    assert "<script>" not in resp.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in resp.text
    assert "style" not in resp.text  # the console's policy is style-src 'self': none inline
