"""A refused sign-in shown to a person (services/gateway/console/sign_in.py): the browser that comes
back to ``/auth/callback`` (a page load: a GET that takes HTML, the rule of the preview's error
pages) gets a page that says the sign-in was refused, why, and links back to the sign-in page;
an API client keeps the JSON-RPC error. Anyone can forge a callback: the page shows no more than
the error did, escaped, loads and runs nothing, and names only a provider error code OAuth
defines (a made-up ``error`` is not echoed, so no one can put words of theirs on the platform's
page). The real console app on the fast layer's world; with a real provider:
tests/integration/test_people_oidc.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from contracts.errors import NotFound, SignInStateRejected
from services.gateway.console.sign_in import UNDEFINED_ERROR
from services.gateway.http import make_app
from tests.fast.conftest import World

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@asynccontextmanager
async def console(world: World) -> AsyncIterator[str]:
    """The gateway's console listener on the world (sign-in not configured)."""

    async def nobody(_: str) -> None:
        return None

    async with AsyncExitStack() as es:
        apps = make_app(world.gateway_resolving(nobody))
        server = await es.enter_async_context(TestServer(apps.console, host="127.0.0.1"))
        yield str(server.make_url("")).rstrip("/")


async def callback(world: World, query: str, accept: str) -> tuple[aiohttp.ClientResponse, str]:
    url = "/auth/callback?" + query
    async with (
        console(world) as base,
        aiohttp.ClientSession(base) as s,
        s.get(url, headers={"Accept": accept}) as r,
    ):
        return r, await r.text()


async def test_a_refused_sign_in_is_a_page_that_says_why_and_links_back(world: World) -> None:
    r, page = await callback(world, "error=access_denied&state=s", BROWSER)
    assert (r.status, r.content_type) == (SignInStateRejected.http_status, "text/html")
    assert r.headers["Cache-Control"] == "no-store"
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]  # no inline code runs
    assert "<h1>Sign-in refused</h1>" in page
    assert "the identity provider refused the sign-in (access_denied)" in page
    assert '<a href="/">Back to sign-in</a>' in page
    assert f"Error {SignInStateRejected.code}" in page
    assert "jsonrpc" not in page
    assert "<script" not in page


async def test_a_sign_in_that_is_not_configured_is_a_page_too(world: World) -> None:
    r, page = await callback(world, "state=s&code=c", BROWSER)
    assert (r.status, r.content_type) == (NotFound.http_status, "text/html")
    assert "sign-in is not configured" in page
    assert '<a href="/">Back to sign-in</a>' in page


@pytest.mark.parametrize("accept", ["*/*", "application/json", ""])
async def test_an_api_client_keeps_the_json_rpc_error(world: World, accept: str) -> None:
    r, body = await callback(world, "error=access_denied", accept)
    assert (r.status, r.content_type) == (SignInStateRejected.http_status, "application/json")
    assert '"code":1081' in body


@pytest.mark.parametrize("forged", [
    "<script>alert(1)</script>",
    "Your account is locked: call +1 555 0100 at once",
    "access_denied<b>x</b>",
])  # fmt: skip
async def test_a_forged_error_puts_no_words_of_its_own_on_the_page(
    world: World, forged: str
) -> None:  # fmt: skip
    for accept in (BROWSER, "*/*"):
        r, said = await callback(world, f"error={forged}", accept)
        assert r.status == SignInStateRejected.http_status
        assert f"the identity provider refused the sign-in ({UNDEFINED_ERROR})" in said
        for words in (forged, "call +1", "<script"):
            assert words not in said
