"""Access tokens through the real gateway: a token out of its scope is refused (one call; every
rule of what a token may do is tests/fast/test_access_tokens.py's, in memory), a revoked or a
bad token gets 401, the events route needs one of the token's machines, and the CLI lists when
a token was last used."""

from __future__ import annotations

import aiohttp
import pytest

from contracts.errors import Forbidden, NotFound, Unauthorized
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.fast.test_access_tokens import snapshot
from tests.integration.test_people import fleet_cli


async def scoped(stack: FleetClient, settings: Settings) -> tuple[FleetClient, str, str]:
    """(a client holding a token for instance A, A's id, another instance B's id)."""
    a = await stack.create_instance("a")
    b = await stack.create_instance("b")
    created = await stack.create_token("ci for a", a.id)
    client = FleetClient(stack.url, created.token)
    return client, a.id, b.id


async def test_out_of_scope_is_forbidden_and_changes_nothing(
    stack: FleetClient, settings: Settings
) -> None:
    # One attack through the real gateway; every other is tests/fast/test_access_tokens.py's.
    client, _a, b = await scoped(stack, settings)
    before = await snapshot(stack, b)
    async with client:
        with pytest.raises(Forbidden):
            await client.create_machine(b)
    assert await snapshot(stack, b) == before


async def test_events_need_one_of_your_machines(stack: FleetClient, settings: Settings) -> None:
    client, _a, b = await scoped(stack, settings)
    theirs = await stack.create_machine(b)
    url = f"{stack.url}/events"
    headers = {"Authorization": f"Bearer {client._token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for query in ({}, {"machineId": theirs.id}):
            async with s.get(url, params=query) as r:
                assert r.status == 403
    await client.close()


async def test_revoked_and_bad_tokens_get_401(stack: FleetClient, settings: Settings) -> None:
    client, _a, _ = await scoped(stack, settings)
    (token,) = await stack.list_tokens()
    assert await stack.revoke_token(token.id)
    assert not await stack.revoke_token(token.id)
    async with client:
        with pytest.raises(Unauthorized):
            await client.list_instances()
    for bad in ("", "fleet_", "fleet_" + "A" * 43, "not-a-token"):
        async with FleetClient(stack.url, bad) as c:
            with pytest.raises(Unauthorized):
                await c.list_instances()
    with pytest.raises(NotFound):
        await stack.revoke_token("t-0000000000000000")


async def test_last_used_is_written_at_most_once_a_minute_and_listed(
    stack: FleetClient, settings: Settings
) -> None:
    made = await stack.create_token("ci", (await stack.create_instance("used")).id)

    def row(listing: str) -> list[str]:
        (line,) = [x for x in listing.splitlines() if x.startswith(made.id)]
        return line.split()

    listing = await fleet_cli(settings, "tokens", "list")
    column = listing.split().index("LAST")  # "LAST USED": the header's one two-word column
    assert row(listing)[column] == "never"
    async with FleetClient(stack.url, made.token) as ci:
        await ci.list_instances()
        (first,) = [t.last_used_at for t in await stack.list_tokens()]
        assert first is not None
        await ci.list_instances()  # within the minute: not written again
        assert [t.last_used_at for t in await stack.list_tokens()] == [first]
    assert row(await fleet_cli(settings, "tokens", "list"))[column] == first.isoformat()
