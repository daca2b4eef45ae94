"""Access tokens: shown once, stored as a hash, scoped to one instance, revocable."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from contracts.errors import Forbidden, NotFound, Unauthorized
from fleet.client import FleetClient
from services.common.settings import Settings
from services.common.store import Store
from tests.integration.test_people import fleet_cli


async def scoped(stack: FleetClient, settings: Settings) -> tuple[FleetClient, str, str]:
    """(a client holding a token for instance A, A's id, another instance B's id)."""
    a = await stack.create_instance("a")
    b = await stack.create_instance("b")
    created = await stack.create_token("ci for a", a.id)
    client = FleetClient(stack.url, created.token)
    return client, a.id, b.id


async def test_secret_is_shown_once_and_stored_only_as_a_hash(
    stack: FleetClient, store: Store
) -> None:
    created = await stack.create_token("admin helper")
    assert created.token.startswith("fleet_")
    listed = await stack.list_tokens()
    assert [t.id for t in listed] == [created.id]
    assert "token" not in str(listed[0])  # the record has no secret
    dump = {k: await store.redis.dump(k) for k in await store.redis.keys("fleet:*")}
    assert not any(created.token.encode() in (v or b"") for v in dump.values())
    async with FleetClient(stack.url, created.token) as admin2:
        assert await admin2.list_instances() == []  # and it works


async def test_an_instance_token_sees_only_its_instance(
    stack: FleetClient, settings: Settings
) -> None:
    client, a, _b = await scoped(stack, settings)
    async with client:
        assert [i.id for i in await client.list_instances()] == [a]
        await client.set_env("MINE", "1", a)
        machine = await client.create_machine(a)
        assert [m.id for m in await client.list_machines()] == [machine.id]
        assert (await client.get_machine(machine.id)).instance_id == a


@pytest.mark.parametrize(
    "attack",
    [
        ("get_instance", "b"),
        ("set_env", "X", "1", "b"),
        ("set_env", "X", "1"),  # the platform scope
        ("list_env", "b"),
        ("add_repo", "b", "https://example.com/r.git", "main", "r"),
        ("create_machine", "b"),
        ("rebuild_machine", "b"),
        ("list_machines", "b"),
        ("create_instance", "mine now"),
        ("create_token", "escalate"),  # an admin token
        ("create_token", "sideways", "b"),
    ],
)
async def test_out_of_scope_is_forbidden_and_changes_nothing(
    stack: FleetClient, settings: Settings, attack: tuple[Any, ...]
) -> None:
    client, _a, b = await scoped(stack, settings)
    method, *args = attack
    args = [b if x == "b" else x for x in args]
    before = await snapshot(stack, b)
    async with client:
        with pytest.raises(Forbidden):
            await getattr(client, method)(*args)
    assert await snapshot(stack, b) == before


async def test_machines_of_another_instance_are_off_limits(
    stack: FleetClient, settings: Settings
) -> None:
    client, _, b = await scoped(stack, settings)
    theirs = await stack.create_machine(b)
    async with client:
        for call in (
            client.get_machine(theirs.id),
            client.archive_machine(theirs.id),
            client.exec(theirs.id, ["true"]),
            client.write_file(theirs.id, "x", "y"),
        ):
            with pytest.raises(Forbidden):
                await call
    assert (await stack.get_machine(theirs.id)).status.value != "archived"


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


async def test_instance_token_manages_only_its_own_tokens(
    stack: FleetClient, settings: Settings
) -> None:
    client, a, b = await scoped(stack, settings)
    other = await stack.create_token("for b", b)
    async with client:
        extra = await client.create_token("second for a", a)
        assert {t.id for t in await client.list_tokens()} >= {extra.id}
        assert other.id not in {t.id for t in await client.list_tokens()}
        with pytest.raises(Forbidden):
            await client.revoke_token(other.id)
    assert other.id in {t.id for t in await stack.list_tokens()}


async def snapshot(admin: FleetClient, instance_id: str) -> tuple[object, ...]:
    return (
        await admin.get_instance(instance_id),
        await admin.list_env(instance_id),
        await admin.list_env(),
        await admin.list_repos(instance_id),
        await admin.list_machines(instance_id),
        len(await admin.list_instances()),
        len(await admin.list_tokens()),
    )


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
