"""A machine's pages are hostile content (with real daemons): what a program answers can
neither set the platform's cookies, nor reach another tenant's preview or the console with a
cookie, nor redirect a browser off its preview; a request's planted preview cookies do not shut
out the platform's own; every preview answer says who may frame it."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from contracts.ports import PREVIEW_COOKIE, PREVIEW_TICKET_PARAM
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_ports import Machine, bearer, previews, serve_in_machine


def own_host(settings: Settings, m: Machine) -> dict[str, str]:
    return {"Host": f"{m.id}-{m.http}.localhost:{settings.preview_port}"}


async def cookie_of(stack: FleetClient, settings: Settings, m: Machine) -> str:
    """A preview cookie for ``m``'s http port, the way a browser gets one (on its own host)."""
    ticket = await stack.preview_ticket(m.id, m.http)
    url = f"{previews(settings)}/?{PREVIEW_TICKET_PARAM}={ticket.ticket}"
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url, headers=own_host(settings, m), allow_redirects=False) as r,
    ):
        assert r.status == 200
        return r.cookies[PREVIEW_COOKIE].value


async def test_a_programs_cookies_stay_its_own_and_never_the_platforms(
    stack: FleetClient, settings: Settings
) -> None:
    b = await serve_in_machine(stack, "tenant-b")
    prefix = f"/machines/{b.id}/ports/{b.http}/"
    async with aiohttp.ClientSession() as session:
        for path, headers in ((prefix, {}), ("/", own_host(settings, b))):
            url = f"{previews(settings)}{path}plant"
            async with session.get(url, headers={**bearer(ADMIN_TOKEN), **headers}) as r:
                assert r.status == 200
                assert "planted" in await r.text()
                set_cookies = r.headers.getall("Set-Cookie", [])
            assert set_cookies == [f"tenant=b; Path={path}"], set_cookies  # no Domain
            assert r.headers.getall("Content-Security-Policy") == ["frame-ancestors 'self'"]


async def test_planted_preview_cookies_never_shut_out_the_platforms_own(
    stack: FleetClient, settings: Settings
) -> None:
    """Machine B's page may plant ``fleet_preview`` for a parent domain or path: A's preview
    still opens with A's own cookie, wherever the browser puts it among the planted ones, and
    A's program never sees any of them."""
    a = await serve_in_machine(stack, "tenant-a")
    ours = await cookie_of(stack, settings, a)
    url = f"{previews(settings)}/headers"
    async with aiohttp.ClientSession() as browser:
        for cookie in (f"{PREVIEW_COOKIE}=planted; {PREVIEW_COOKIE}={ours}; x=1",
                       f"{PREVIEW_COOKIE}={ours}; {PREVIEW_COOKIE}=planted; x=1",
                       f"{PREVIEW_COOKIE}=pvs_planted; x=1; {PREVIEW_COOKIE}={ours}"):  # fmt: skip
            headers = {**own_host(settings, a), "Cookie": cookie}
            async with browser.get(url, headers=headers) as r:
                assert r.status == 200, cookie
                seen = {k.lower(): v for k, v in (await r.json()).items()}
            assert seen["cookie"] == "x=1"
        headers = {**own_host(settings, a), "Cookie": f"{PREVIEW_COOKIE}=planted"}
        async with browser.get(url, headers=headers) as r:
            assert r.status == 401


async def test_a_redirect_never_leaves_the_preview(stack: FleetClient, settings: Settings) -> None:
    m = await serve_in_machine(stack, "redirects")
    prefix = f"/machines/{m.id}/ports/{m.http}/"
    admin = bearer(ADMIN_TOKEN)
    own = {**admin, **own_host(settings, m)}
    cases = [  # (Location, headers, what the browser gets: a Location, or None for 502)
        ("http://evil.example/", admin, None),
        ("//evil.example/", own, None),
        (f"http://localhost:{m.http}/headers?a=1", admin, f"{prefix}headers?a=1"),
        (f"http://localhost:{m.http}/headers", own, "/headers"),
        ("/../../../../rpc", admin, None),
        ("/../../../../rpc", own, "/rpc"),  # its own origin: every path is its own
    ]
    async with aiohttp.ClientSession() as session:
        for to, headers, expected in cases:
            base = previews(settings) + (prefix if headers is admin else "/")
            async with session.get(f"{base}redirect?to={quote(to, safe='')}", headers=headers,
                                   allow_redirects=False) as r:  # fmt: skip
                if expected is None:
                    assert r.status == 502, (to, r.status)
                    assert (await r.json())["error"]["code"] == 1056
                    assert "off its preview" in (await r.json())["error"]["message"]
                else:
                    assert r.status == 302, (to, r.status)
                    assert r.headers["Location"] == expected


async def test_the_console_is_framed_by_nobody_and_opens_no_window_to_a_preview(
    stack: FleetClient, settings: Settings
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{settings.port}/") as r,
    ):
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    # A refusal on the preview listener says who may frame it too.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{previews(settings)}/machines/m-0123456789abcdef/ports/80/") as r,
    ):
        assert r.status == 401
        assert "frame-ancestors" in r.headers["Content-Security-Policy"]
