"""GET /events under attack and at its edges: one bus subscription for every stream, caps per
token and per gateway, revocation, tickets, and ``caught-up`` at once when nothing is stored."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import msgspec
import pytest

from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported, encode_event
from contracts.ids import new_event_id
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CAUGHT_UP = b"event: caught-up"


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, rate_unauthenticated_per_min=5)


async def until_caught_up(r: aiohttp.ClientResponse) -> list[bytes]:
    lines = []
    async for raw in r.content:
        lines.append(raw.rstrip(b"\r\n"))
        if lines[-1] == CAUGHT_UP:
            return lines
    raise AssertionError(f"the stream ended before caught-up: {lines}")


async def ready_machine(stack: FleetClient) -> tuple[str, int]:
    """A machine with its events stored, and the stream's last sequence."""
    inst = await stack.create_instance("sse")
    machine = await stack.create_machine(inst.id)
    await stack.wait_for(machine.id, ["ready"], timeout_s=60)
    last = max([seq async for seq, _ in stack.events(machine.id, follow=False)])
    return machine.id, last


async def test_caught_up_comes_at_once_when_nothing_is_waiting(
    stack: FleetClient, settings: Settings
) -> None:
    machine_id, last = await ready_machine(stack)
    url = f"{stack.url}/events"
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, {}),  # the default stream: new events only
        ({"since": str(last)}, {}),
        ({"machineId": machine_id}, {"Last-Event-ID": str(last)}),
        ({"machineId": "m-0000000000000000"}, {}),  # a machine with no events
    ]
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for query, headers in cases:
            async with asyncio.timeout(1), s.get(url, params=query, headers=headers) as r:
                assert r.status == 200
                lines = await until_caught_up(r)
                assert not [line for line in lines if line.startswith(b"id:")], query
    # the client's --no-follow view of the same: returns at once, with nothing
    async with asyncio.timeout(1):
        assert [e async for e in stack.events(since=last, follow=False)] == []
        assert [e async for e in stack.events(machine_id, since=last, follow=False)] == []


async def test_every_stream_shares_one_subscription(
    stack: FleetClient, settings: Settings, bus: Bus
) -> None:
    before = (await bus.js.stream_info(subjects.STREAM_NAME)).state.consumer_count
    async with contextlib.AsyncExitStack() as es:
        s = await es.enter_async_context(aiohttp.ClientSession(headers=AUTH))
        for _ in range(5):
            r = await es.enter_async_context(s.get(f"{stack.url}/events"))
            await until_caught_up(r)
        during = (await bus.js.stream_info(subjects.STREAM_NAME)).state.consumer_count
    assert during == before  # five more streams, no more consumers


async def test_revoking_a_token_ends_its_open_streams_within_a_second(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("revoked")
    machine = await stack.create_machine(inst.id)
    created = await stack.create_token("ci", inst.id)
    headers = {"Authorization": f"Bearer {created.token}"}
    url = f"{stack.url}/events?machineId={machine.id}"
    async with aiohttp.ClientSession(headers=headers) as s, s.get(url) as r:
        await until_caught_up(r)
        await stack.revoke_token(created.id)
        async with asyncio.timeout(1.5):  # checked every 0.5 s, and a margin
            async for _ in r.content:
                pass  # read to the end: the server closes the stream


async def test_events_take_a_single_use_ticket_never_the_token_in_the_url(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("ticketed")
    machine = await stack.create_machine(inst.id)
    created = await stack.create_token("console", inst.id)
    async with FleetClient(stack.url, created.token) as mine:
        url = await mine.events_url(machine.id)
    async with aiohttp.ClientSession() as s:  # no Authorization header
        async with s.get(url) as r:
            assert r.status == 200
            assert CAUGHT_UP in await until_caught_up(r)
        async with s.get(url) as r:
            assert r.status == 401  # spent
        query = {"token": created.token, "machineId": machine.id}
        async with s.get(f"{stack.url}/events", params=query) as r:
            assert r.status == 401  # the long-lived token is not accepted in the URL


async def test_an_address_sending_bad_tokens_gets_429_with_retry_after(
    stack: FleetClient, settings: Settings
) -> None:
    bad = {"Authorization": "Bearer fleet_" + "A" * 43}
    statuses = []
    async with aiohttp.ClientSession(headers=bad) as s:
        for _ in range(7):
            async with s.post(f"{stack.url}/rpc", data=b"{}") as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
    assert statuses == [401] * 5 + [429] * 2
    assert retry_after is not None
    assert int(retry_after) >= 1


async def test_bad_secrets_never_lock_a_valid_token_out(
    stack: FleetClient, settings: Settings
) -> None:
    """Made-up events tickets from one address use up that address's budget of bad tickets
    only: the admin token from the same address is served all along, and bad tokens from it
    still have their own budget (401 five times, then 429)."""
    listing = b'{"jsonrpc":"2.0","id":1,"method":"instances.list"}'
    bad = {"Authorization": "Bearer fleet_" + "A" * 43}
    async with aiohttp.ClientSession() as s:

        async def admin_served() -> bool:
            async with s.post(f"{stack.url}/rpc", data=listing, headers=AUTH) as r:
                return r.status == 200 and "result" in await r.json()

        tickets = []
        for _ in range(40):
            async with s.get(f"{stack.url}/events", params={"ticket": "evt_made_up"}) as r:
                tickets.append(r.status)
        assert tickets == [401] * 5 + [429] * 35
        assert await admin_served()
        tokens = []
        for _ in range(7):
            async with s.post(f"{stack.url}/rpc", data=listing, headers=bad) as r:
                tokens.append(r.status)
        assert tokens == [401] * 5 + [429] * 2
        assert await admin_served()
        async with s.get(f"{stack.url}/events", params={"ticket": "evt_made_up"},
                         headers=AUTH) as r:  # fmt: skip
            assert r.status == 200  # a valid token beside a bad ticket: the token counts


@pytest.mark.parametrize("path", ["/rpc", "/events", "/", "/healthz"])
async def test_security_headers(stack: FleetClient, settings: Settings, path: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as s:
        method = s.post if path == "/rpc" else s.get
        async with method(f"{stack.url}{path}", data=b"{}" if path == "/rpc" else None) as r:
            h = r.headers
            assert "script-src 'self'" in h["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
            assert h["X-Frame-Options"] == "DENY"
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["Referrer-Policy"] == "no-referrer"
            assert h["Cache-Control"] == "no-store"


async def test_a_forged_event_is_never_shown(stack: FleetClient, bus: Bus) -> None:
    """Issue 13: a machine may publish only on its own status subject, but writes the payload
    itself. A report stored there that names another machine is shown to no one: not live, not
    in a replay."""
    victim, last = await ready_machine(stack)
    forger = "m-00000000000f0f0f"
    forged = DaemonStatusReported(event_id=new_event_id(), machine_id=victim, status="stopping",
                                  version="6.6.6", git_sha=None, boot_id="forged")  # fmt: skip
    honest = DaemonStatusReported(event_id=new_event_id(), machine_id=forger, status="ready",
                                  version="0.1.0", git_sha=None, boot_id="honest")  # fmt: skip
    own = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, forger)
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(f"{stack.url}/events") as live:
            await until_caught_up(live)
            for event in (forged, honest):  # stored as a machine would: on the forger's subject
                await bus.nc.request(own, encode_event(event), timeout=5)
            seen = await data_until(live, b"honest")
        async with s.get(f"{stack.url}/events", params={"since": str(last)}) as replay:
            stored = await until_caught_up(replay)
    assert not [line for line in seen + stored if b"forged" in line]
    assert [line for line in stored if b"honest" in line]


async def data_until(r: aiohttp.ClientResponse, marker: bytes) -> list[bytes]:
    lines = []
    async with asyncio.timeout(10):
        async for raw in r.content:
            lines.append(raw.rstrip(b"\r\n"))
            if marker in lines[-1]:
                return lines
    raise AssertionError(f"the stream ended before {marker!r}: {lines}")
