"""Access tokens, in memory: shown once, stored as a hash, scoped to one instance, revocable.

Each secret is resolved to its caller as ``POST /rpc`` resolves it and each call is handled by
the gateway's own dispatcher (``tests/fakes/client.py``); the real server's routes (a 401, the
events route's 403, the CLI's listing) are ``tests/integration/test_access_tokens.py``'s.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import Forbidden, NotFound, Unauthorized
from controlplane.store import Store
from fleet.client import FleetClient
from tests.fakes.client import InMemoryGateway
from tests.fast.conftest import World

#: Every call an instance token must not make: on another instance ("b"), on the platform, or
#: making what only an admin makes.
ATTACKS = [
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
]


async def scoped(fleet: FleetClient, gateway: InMemoryGateway) -> tuple[FleetClient, str, str]:
    """(a client holding a token for instance A, A's id, another instance B's id)."""
    a = await fleet.create_instance("a")
    b = await fleet.create_instance("b")
    created = await fleet.create_token("ci for a", a.id)
    return gateway.client(created.token), a.id, b.id


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


async def test_secret_is_shown_once_and_stored_only_as_a_hash(
    fleet: FleetClient, gateway: InMemoryGateway, store: Store
) -> None:
    created = await fleet.create_token("admin helper")
    assert created.token.startswith("fleet_")
    listed = await fleet.list_tokens()
    assert [t.id for t in listed] == [created.id]
    assert "token" not in str(listed[0])  # the record has no secret
    dump = {k: await store.redis.dump(k) for k in await store.redis.keys(store.keys.pattern())}
    assert not any(created.token.encode() in (v or b"") for v in dump.values())
    async with gateway.client(created.token) as admin2:
        assert await admin2.list_instances() == []  # and it works


async def test_an_instance_token_sees_only_its_instance(
    fleet: FleetClient, gateway: InMemoryGateway
) -> None:
    client, a, _b = await scoped(fleet, gateway)
    async with client:
        assert [i.id for i in await client.list_instances()] == [a]
        await client.set_env("MINE", "1", a)
        machine = await client.create_machine(a)
        assert [m.id for m in await client.list_machines()] == [machine.id]
        assert (await client.get_machine(machine.id)).instance_id == a


@pytest.mark.parametrize("attack", ATTACKS)
async def test_out_of_scope_is_forbidden_and_changes_nothing(
    fleet: FleetClient, gateway: InMemoryGateway, attack: tuple[Any, ...]
) -> None:
    client, _a, b = await scoped(fleet, gateway)
    method, *args = attack
    args = [b if x == "b" else x for x in args]
    before = await snapshot(fleet, b)
    async with client:
        with pytest.raises(Forbidden):
            await getattr(client, method)(*args)
    assert await snapshot(fleet, b) == before


async def test_machines_of_another_instance_are_off_limits(
    fleet: FleetClient, gateway: InMemoryGateway
) -> None:
    client, _, b = await scoped(fleet, gateway)
    theirs = await fleet.create_machine(b)
    async with client:
        for call in (
            client.get_machine(theirs.id),
            client.archive_machine(theirs.id),
            client.exec(theirs.id, ["true"]),
            client.write_file(theirs.id, "x", "y"),
        ):
            with pytest.raises(Forbidden):
                await call
    assert (await fleet.get_machine(theirs.id)).status.value != "archived"


async def test_revoked_and_bad_tokens_are_refused(
    fleet: FleetClient, gateway: InMemoryGateway
) -> None:
    client, _a, _ = await scoped(fleet, gateway)
    async with client:
        await client.list_instances()  # known to this gateway before it is revoked
    (token,) = await fleet.list_tokens()
    assert await fleet.revoke_token(token.id)
    assert not await fleet.revoke_token(token.id)
    async with client:
        with pytest.raises(Unauthorized):
            await client.list_instances()
    for bad in ("", "fleet_", "fleet_" + "A" * 43, "not-a-token"):
        async with gateway.client(bad) as c:
            with pytest.raises(Unauthorized):
                await c.list_instances()
    with pytest.raises(NotFound):
        await fleet.revoke_token("t-0000000000000000")


async def test_instance_token_manages_only_its_own_tokens(
    fleet: FleetClient, gateway: InMemoryGateway
) -> None:
    client, a, b = await scoped(fleet, gateway)
    other = await fleet.create_token("for b", b)
    async with client:
        extra = await client.create_token("second for a", a)
        assert {t.id for t in await client.list_tokens()} >= {extra.id}
        assert other.id not in {t.id for t in await client.list_tokens()}
        with pytest.raises(Forbidden):
            await client.revoke_token(other.id)
    assert other.id in {t.id for t in await fleet.list_tokens()}


async def test_last_used_is_written_at_most_once_a_minute(
    fleet: FleetClient, gateway: InMemoryGateway, world: World
) -> None:
    made = await fleet.create_token("ci", (await fleet.create_instance("used")).id)
    assert [t.last_used_at for t in await fleet.list_tokens()] == [None]  # "never"
    async with gateway.client(made.token) as ci:
        await ci.list_instances()
        (first,) = [t.last_used_at for t in await fleet.list_tokens()]
        assert first is not None
        await ci.list_instances()  # within the minute: not written again
        assert [t.last_used_at for t in await fleet.list_tokens()] == [first]
    # Nor by another gateway process, which has not seen the token yet (no caller kept).
    async with InMemoryGateway(world.dispatcher, world.store, world.settings).client(
        made.token
    ) as elsewhere:
        await elsewhere.list_instances()
    assert [t.last_used_at for t in await fleet.list_tokens()] == [first]
