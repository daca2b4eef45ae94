"""Two fleets on one valkey, told apart by their key prefix (``FLEET_KEY_PREFIX``), through
the real server and its Lua scripts; the rule case by case is tests/fast/test_key_prefix.py."""

from __future__ import annotations

import pytest

from contracts.errors import NotFound
from contracts.status import MachineStatus
from controlplane.store import Store
from fleet.up import ValkeyServer


async def test_two_prefixes_on_one_server_see_nothing_of_each_other(
    redis_server: ValkeyServer,
) -> None:
    async with (
        Store(redis_server.url, key_prefix="fleet-a:") as a,
        Store(redis_server.url, key_prefix="fleet-b:") as b,
    ):
        inst = await a.create_instance("demo")
        machine = await a.create_machine(inst.id, "local")
        moved = await a.transition(machine.id, MachineStatus.PROVISIONING, "started")
        assert moved.accepted
        await a.set_env(None, "VAR", "1")
        async with a.locks.hold("provision:x") as held_a, b.locks.hold("provision:x") as held_b:
            assert held_a  # one name, two locks
            assert held_b

        assert await b.list_instances() == []
        assert await b.list_machines() == []
        assert await b.list_env(None) == []
        with pytest.raises(NotFound):
            await b.get_machine(machine.id)
        # B's status script finds no machine of that id: A's record is untouched.
        assert not (await b.transition(machine.id, MachineStatus.FAILED, "theirs")).accepted
        assert (await a.get_machine(machine.id)).status is MachineStatus.PROVISIONING
        assert (await b.machines_by_status())[MachineStatus.PROVISIONING.value] == 0

        await b.create_instance("theirs")
        found_a = {k async for k in a.redis.scan_iter(match=a.keys.pattern())}
        found_b = {k async for k in b.redis.scan_iter(match=b.keys.pattern())}
        assert found_a
        assert found_b
        assert not found_a & found_b
        assert found_a | found_b == set(await a.redis.keys("*"))
        await a.redis.unlink(*found_a, *found_b)
