"""Two fleets on one Redis-compatible server, told apart by their key prefix
(``FLEET_KEY_PREFIX``): every key a fleet writes starts with its prefix, and a store on
another prefix sees nothing of it. The fast layer's store has a prefix of its own (not
``fleet:``), so each fast test also shows no key is spelled without it."""

from __future__ import annotations

from typing import cast

import pytest

from contracts.errors import NotFound
from controlplane.store import Store
from fleet.client import FleetClient
from tests.fast.conftest import World


async def test_a_fleet_writes_only_under_its_prefix(world: World, fleet: FleetClient) -> None:
    inst = await fleet.create_instance("demo")
    await fleet.set_env("PLATFORM_VAR", "1")
    await fleet.set_env("APP_VAR", "2", inst.id)
    await fleet.create_token("helper", inst.id)
    machine = await world.ready_machine(inst.id)
    async with world.store.locks.hold("a-lock"):
        pass
    written = cast(list[str], await world.store.redis.keys("*"))
    assert written, "nothing was written"
    stray = [k for k in written if not k.startswith(world.store.keys.prefix)]
    assert stray == [], stray
    assert any(machine.id in k for k in written)


async def test_a_store_on_another_prefix_sees_nothing_of_it(
    world: World, fleet: FleetClient
) -> None:
    inst = await fleet.create_instance("demo")
    await fleet.set_env("PLATFORM_VAR", "1")
    await fleet.create_token("helper")
    machine = await world.ready_machine(inst.id)
    other = Store.on_client(world.store.redis, key_prefix="other-fleet:")

    assert await other.list_instances() == []
    assert await other.list_machines() == []
    assert await other.list_env(None) == []
    assert await other.tokens.ids() == []
    assert await other.machine_secret(machine.id) is None
    with pytest.raises(NotFound):
        await other.get_machine(machine.id)
    with pytest.raises(NotFound):
        await other.get_instance(inst.id)
    assert await other.machines_by_status() == dict.fromkeys(
        await world.store.machines_by_status(), 0
    )
    # Nor does it the other way round, and each holds its own lock of one name.
    await other.create_instance("theirs")
    assert [i.id for i in await world.store.list_instances()] == [inst.id]
    lock = "provision:x"
    async with world.store.locks.hold(lock) as mine, other.locks.hold(lock) as theirs:
        assert mine
        assert theirs
