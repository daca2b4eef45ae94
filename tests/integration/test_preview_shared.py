"""Previews on one origin that all of them share (``FLEET_PREVIEW_ORIGIN`` without
``{machine}`` and ``{port}``: where no wildcard name can be had), by path, on the preview
listener: a browser opens one with a ticket that becomes a cookie scoped to its path."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from contracts.ports import PREVIEW_COOKIE, PREVIEW_TICKET_PARAM
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_ports import previews, serve_in_machine, ws_echo


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, preview_origin=previews(settings))


async def test_a_browser_opens_a_preview_with_a_ticket_and_a_cookie(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "browser")
    base = previews(settings)
    path = f"/machines/{m.id}/ports/{m.http}/"
    ticket = await stack.preview_ticket(m.id, m.http)
    assert ticket.url == base + path  # the listener's origin, never the console's
    url = f"{ticket.url}headers?{PREVIEW_TICKET_PARAM}={ticket.ticket}"
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, as a browser keeps them
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(url, allow_redirects=False) as r:
            assert r.status == 200  # a page of the preview's own sends the browser on
            assert r.headers["Refresh"] == f"0; url={path}headers"  # the ticket is gone
            cookie = r.cookies[PREVIEW_COOKIE]
            assert cookie["httponly"]
            assert cookie["path"] == path
            assert cookie["samesite"] == "Strict"
        async with browser.get(f"{ticket.url}headers") as r:
            assert r.status == 200
            seen = {k.lower(): v for k, v in (await r.json()).items()}
        assert PREVIEW_COOKIE not in seen.get("cookie", "")  # nor does the cookie
        async with browser.get(url, allow_redirects=False) as r:
            assert r.status == 401  # a ticket is spent once
        # The page keeps the path as it came, still encoded; an encoded CR LF is no path of a
        # preview at all, so no header can be injected through it.
        odd = await stack.preview_ticket(m.id, m.http)
        async with browser.get(f"{odd.url}a%20b%C3%A9?{PREVIEW_TICKET_PARAM}={odd.ticket}",
                               allow_redirects=False) as r:  # fmt: skip
            assert r.status == 200
            assert r.headers["Refresh"] == f"0; url={path}a%20b%C3%A9"
        crlf = f"{base}{path}x%0D%0ASet-Cookie:%20a=b?{PREVIEW_TICKET_PARAM}=pvt_x"
        async with browser.get(crlf, allow_redirects=False) as r:
            assert r.status == 404
            assert [c for c in r.headers.getall("Set-Cookie", []) if c.startswith("a=")] == []
        # The cookie opens that port only: another port of the machine needs its own ticket.
        async with browser.get(f"{base}/machines/{m.id}/ports/{m.ws}/") as r:
            assert r.status == 401
        ws_ticket = await stack.preview_ticket(m.id, m.ws)
        async with browser.get(f"{ws_ticket.url}?{PREVIEW_TICKET_PARAM}={ws_ticket.ticket}",
                               allow_redirects=False) as r:  # fmt: skip
            assert r.status == 200
        await ws_echo(browser, ws_ticket.url)  # the cookie opens its WebSocket
