"""A membership or role change cuts what the person holds open, through the whole stack: a
developer removed from an instance loses their terminal, event stream, tunnel, preview
WebSocket and preview cookie; one demoted to viewer loses everything but looking; an admin
demoted to member loses the stream of every machine's events. Each is awaited closed (with a
timeout), never timed: the revocation round the change sets off cuts them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from contracts.gateway.audit import Action
from contracts.ports import PREVIEW_COOKIE, PREVIEW_TICKET_PARAM
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_audit_attacks import entries
from tests.integration.test_gateway_events import until_caught_up
from tests.integration.test_people import member_client, replica
from tests.integration.test_ports import Machine, bearer, previews, serve_in_machine
from tests.integration.test_refresh import ready_machine
from tests.integration.test_sessions import SHELL, Term

#: How long each cut is awaited: far past the one round a change sets off, for a loaded host.
CUT_WAIT_S = 10.0


@dataclass
class Held:
    """What a developer holds open on a machine."""

    term: Term
    events: aiohttp.ClientResponse
    tunnel: aiohttp.ClientWebSocketResponse
    preview_ws: aiohttp.ClientWebSocketResponse
    #: The preview's host and the cookie its ticket became.
    preview: dict[str, str]


@asynccontextmanager
async def holding(dev: FleetClient, m: Machine, settings: Settings) -> AsyncIterator[Held]:
    """A terminal, the machine's event stream, a tunnel to its raw TCP port, and a preview of
    its HTTP port by cookie (and a preview WebSocket by cookie), each seen working."""
    async with AsyncExitStack() as es:
        http = await es.enter_async_context(aiohttp.ClientSession(headers=bearer(dev._token)))
        events = await es.enter_async_context(http.get(f"{dev.url}/events?machineId={m.id}"))
        await until_caught_up(events)
        opened = await dev.open_session(m.id, SHELL)
        term = Term(await dev.attach_session(m.id, opened.session_id))
        await term.type("echo up-$((6*7))\n")
        await term.until(b"up-42")
        tunnel_url = f"{dev.url}/machines/{m.id}/tunnel/{m.upper}"
        tunnel = await es.enter_async_context(http.ws_connect(tunnel_url))
        await tunnel.send_bytes(b"hi")
        assert (await tunnel.receive(timeout=CUT_WAIT_S)).data == b"HI"

        ticket = await dev.preview_ticket(m.id, m.http)
        host = urlsplit(ticket.url).netloc
        browser = await es.enter_async_context(aiohttp.ClientSession())
        spend = f"{previews(settings)}/?{PREVIEW_TICKET_PARAM}={ticket.ticket}"
        async with browser.get(spend, headers={"Host": host}, allow_redirects=False) as r:
            assert r.status == 200, await r.text()
            cookie = r.cookies[PREVIEW_COOKIE].value
        jar = {"Host": host, "Cookie": f"{PREVIEW_COOKIE}={cookie}"}
        async with browser.get(f"{previews(settings)}/index.html", headers=jar) as r:
            assert "hello from the machine" in await r.text()
        ws_ticket = await dev.preview_ticket(m.id, m.ws)
        ws_host = urlsplit(ws_ticket.url).netloc
        spend = f"{previews(settings)}/?{PREVIEW_TICKET_PARAM}={ws_ticket.ticket}"
        async with browser.get(spend, headers={"Host": ws_host}, allow_redirects=False) as r:
            ws_cookie = r.cookies[PREVIEW_COOKIE].value
        preview_ws = await es.enter_async_context(browser.ws_connect(
            f"{previews(settings)}/",
            headers={"Host": ws_host, "Cookie": f"{PREVIEW_COOKIE}={ws_cookie}"},
        ))  # fmt: skip
        await preview_ws.send_str("hello")
        assert (await preview_ws.receive(timeout=CUT_WAIT_S)).data == "hello"
        yield Held(term, events, tunnel, preview_ws, jar)


async def closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read to the WebSocket's close, without a word from this side (it is the gateway's)."""
    async with asyncio.timeout(CUT_WAIT_S):
        while (await ws.receive()).type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            pass


async def ended(events: aiohttp.ClientResponse) -> None:
    async with asyncio.timeout(CUT_WAIT_S):
        async for _ in events.content:
            pass  # read to the end: the gateway ends the stream


async def preview_status(settings: Settings, jar: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(f"{previews(settings)}/index.html", headers=jar) as r,
    ):
        return r.status


async def test_a_removed_member_loses_terminal_events_tunnel_and_previews(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "removed")
    dev = await member_client(stack, m.instance_id, "gone@example.com", "developer")
    async with dev, holding(dev, m, settings) as held:
        await stack.set_member(m.instance_id, "gone@example.com", "none")
        assert await held.term.to_close(timeout=CUT_WAIT_S) is not None
        await ended(held.events)
        await closed(held.tunnel)
        await closed(held.preview_ws)
        assert await preview_status(settings, held.preview) == 403  # as any call of theirs
    (user,) = [u.id for u in await stack.list_users() if u.email == "gone@example.com"]
    (cut,) = await entries(stack, 1, actor=user, method=Action.STREAMS_CUT)
    assert cut.params == {"eventStreams": 1, "byteStreams": 3}


async def test_a_demoted_member_keeps_looking_and_loses_the_rest(
    stack: FleetClient, settings: Settings
) -> None:
    """Developer to viewer: a viewer may not run commands or reach ports, so the terminal, the
    tunnel and the previews are cut; an admin demoted to member loses the all-machines event
    stream only admins may follow."""
    m = await serve_in_machine(stack, "demoted")
    dev = await member_client(stack, m.instance_id, "down@example.com", "developer")
    await stack.create_user("boss@example.com", role="admin")
    boss_token = (await stack.create_scoped_token("boss's", user="boss@example.com")).token
    async with (
        dev,
        holding(dev, m, settings) as held,
        aiohttp.ClientSession(headers=bearer(boss_token)) as boss,
        boss.get(f"{stack.url}/events") as every,
    ):
        await until_caught_up(every)
        await stack.set_member(m.instance_id, "down@example.com", "viewer")
        assert await held.term.to_close(timeout=CUT_WAIT_S) is not None
        await closed(held.tunnel)
        await closed(held.preview_ws)
        assert await preview_status(settings, held.preview) == 403  # as any call of theirs
        await stack.set_user_role("boss@example.com", "member")
        await ended(every)


async def test_a_removal_on_one_replica_cuts_a_terminal_on_another(
    stack: FleetClient, settings: Settings
) -> None:
    """Replica A removes the member; replica B, whose own round is a minute long, cuts their
    terminal there on A's notice of the change (the one that cuts a disabled user's)."""
    mid = await ready_machine(stack, "replicas-cut")
    inst = (await stack.get_machine(mid)).instance_id
    dev = await member_client(stack, inst, "far@example.com", "developer")
    async with AsyncExitStack() as es, dev:
        a, b = await replica(settings, es), await replica(settings, es)
        admin_a = await es.enter_async_context(FleetClient(a, ADMIN_TOKEN))
        on_b = await es.enter_async_context(FleetClient(b, dev._token))
        opened = await on_b.open_session(mid, SHELL)
        term = Term(await on_b.attach_session(mid, opened.session_id))
        await term.type("echo up-$((6*7))\n")
        await term.until(b"up-42")
        await admin_a.set_member(inst, "far@example.com", "none")
        assert await term.to_close(timeout=CUT_WAIT_S) is not None
