"""Previews on origins of their own, on the preview listener (``FLEET_PREVIEW_ORIGIN``, here a
template of another shape than the default's): a request whose Host names a machine's port is
that port's, whatever its path (``/rpc`` included), with the same tickets, cookies and
refusals as the path-based previews; the console's listener serves no preview at all."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest

from contracts.ports import PREVIEW_COOKIE, PREVIEW_TICKET_PARAM
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_ports import bearer, fleet_cli, serve_in_machine, ws_echo


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    origin = f"http://{{port}}-{{machine}}.preview.localhost:{settings.preview_port}"
    return msgspec.structs.replace(settings, preview_origin=origin)


async def test_a_preview_host_is_its_ports_whole_origin(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "origin")
    console = f"http://127.0.0.1:{settings.port}"
    gateway = f"http://127.0.0.1:{settings.preview_port}"
    host = f"{m.http}-{m.id}.preview.localhost:{settings.preview_port}"
    ticket = await stack.preview_ticket(m.id, m.http)
    assert ticket.url == f"http://{host}/"
    async with fleet_cli(settings, "machines", "preview", m.id, str(m.http)) as cli:
        out, _ = await asyncio.wait_for(cli.communicate(), 30)
    assert out.decode().startswith(f"http://{host}/?{PREVIEW_TICKET_PARAM}=pvt_")
    async with aiohttp.ClientSession() as browser:
        url = f"{gateway}/headers?{PREVIEW_TICKET_PARAM}={ticket.ticket}"
        async with browser.get(url, headers={"Host": host}, allow_redirects=False) as r:
            assert r.status == 200
            assert r.headers["Refresh"] == "0; url=/headers"
            cookie = r.cookies[PREVIEW_COOKIE]
            assert cookie["path"] == "/"
            assert not cookie["domain"]  # host-only: no other preview's host gets it
        jar = {"Host": host, "Cookie": f"{PREVIEW_COOKIE}={cookie.value}"}
        async with browser.get(f"{gateway}/headers", headers=jar) as r:
            assert r.status == 200
            assert r.headers.getall("Content-Security-Policy") == ["frame-ancestors 'self'"]
            seen = {k.lower(): v for k, v in (await r.json()).items()}
        assert PREVIEW_COOKIE not in seen.get("cookie", "")
        assert seen["host"] == f"localhost:{m.http}"
        assert "x-forwarded-prefix" not in seen  # its paths are its own
        # Every path is the program's: the gateway's own /rpc is not reachable from a preview.
        async with browser.get(f"{gateway}/rpc", headers=jar) as r:
            assert "hello from the machine" in await r.text()
        async with browser.get(f"{gateway}/", headers={"Host": host}) as r:
            assert r.status == 401
        other = f"{m.ws}-{m.id}.preview.localhost:{settings.preview_port}"  # not that cookie's
        async with browser.get(f"{gateway}/", headers={**jar, "Host": other}) as r:
            assert r.status == 401
        await ws_echo(browser, f"{gateway}/", headers={**bearer(ADMIN_TOKEN), "Host": other})
        # The listener's own address serves the path-based previews, never the console.
        async with browser.get(f"{gateway}/machines/{m.id}/ports/{m.http}/",
                               headers=bearer(ADMIN_TOKEN)) as r:  # fmt: skip
            assert "hello from the machine" in await r.text()
        async with browser.get(f"{gateway}/") as r:
            assert r.status == 404
        # The console's listener serves the console, whatever Host says: no preview there.
        async with browser.get(f"{console}/", headers={**jar, "Host": host}) as r:
            assert "hello from the machine" not in await r.text()
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_the_ticket_redirect_never_leaves_the_preview_host(
    stack: FleetClient, settings: Settings
) -> None:
    """A preview host takes any path: ``//evil.example/`` with a ticket must not redirect the
    browser to another site (an open redirect on the preview's name)."""
    m = await serve_in_machine(stack, "redirect")
    host = f"{m.http}-{m.id}.preview.localhost:{settings.preview_port}"
    for path in ("//evil.example/x", "/\\evil.example/x"):
        ticket = await stack.preview_ticket(m.id, m.http)
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.preview_port)
        writer.write(f"GET {path}?{PREVIEW_TICKET_PARAM}={ticket.ticket} HTTP/1.1\r\n"
                     f"Host: {host}\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
        answer = (await asyncio.wait_for(reader.read(), 10)).decode("latin-1")
        writer.close()
        assert answer.startswith("HTTP/1.1 200"), answer[:200]
        refresh = next(line.split(":", 1)[1].strip() for line in answer.split("\r\n")
                       if line.lower().startswith("refresh:"))  # fmt: skip
        assert refresh == "0; url=/evil.example/x", path
        assert 'href="/evil.example/x"' in answer
