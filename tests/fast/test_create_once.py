"""machines.create's idempotencyKey rules, in memory (the real store's Lua on fakeredis).

Beside tests/integration/test_create_once.py (the real gateway, valkey and NATS: concurrency,
tenants, a lost answer), not instead of it."""

from __future__ import annotations

import pytest

from contracts.errors import Conflict, FleetError, IdempotencyKeyReused
from contracts.events import MachineCreated
from contracts.status import MachineStatus as S
from services.gateway.access import Caller
from tests.fast.conftest import World


def created(world: World, machine_id: str) -> list[MachineCreated]:
    return [e for e in world.bus.events if isinstance(e, MachineCreated)
            and e.machine_id == machine_id]  # fmt: skip


async def test_a_repeat_answers_the_first_machine_without_a_second_event(world: World) -> None:
    inst = await world.instance()
    params = {"instanceId": inst.id, "idempotencyKey": "fast-key-0001"}
    first = await world.rpc("machines.create", params)
    await world.bus.settle()
    again = await world.rpc("machines.create", params)  # after the first went ready
    assert again["id"] == first["id"]
    assert again["status"] == S.READY.value
    assert len(created(world, first["id"])) == 1
    assert world.bus.duplicates == 0  # not even a dropped duplicate: it was not sent again


async def test_a_key_with_other_params_names_the_first_machine(world: World) -> None:
    one, two = await world.instance("one"), await world.instance("two")
    first = await world.rpc(
        "machines.create", {"instanceId": one.id, "idempotencyKey": "k-0000001"}
    )
    with pytest.raises(IdempotencyKeyReused) as caught:
        await world.rpc("machines.create", {"instanceId": two.id, "idempotencyKey": "k-0000001"})
    assert caught.value.data == {"machineId": first["id"]}


async def test_keys_are_per_token(world: World) -> None:
    inst = await world.instance()
    token_a = Caller(token_id="t-a", admin=False, instance_id=inst.id)
    token_b = Caller(token_id="t-b", admin=False, instance_id=inst.id)
    params = {"instanceId": inst.id, "idempotencyKey": "k-0000001"}
    await world.rpc("machines.create", params, token_a)
    with pytest.raises(FleetError) as caught:  # a new create for b: the instance's rule
        await world.rpc("machines.create", params, token_b)
    assert caught.value.code == Conflict.code


async def test_a_failed_publish_is_published_by_the_retry(world: World) -> None:
    """The record was written, machine.created was not: the machine stays `created` (not
    `failed`) and the client's retry with the key publishes the event, once."""
    inst = await world.instance()
    params = {"instanceId": inst.id, "idempotencyKey": "k-0000002"}
    world.bus.fail_publish(MachineCreated)
    with pytest.raises(FleetError):
        await world.rpc("machines.create", params)
    [machine] = await world.store.list_machines(inst.id)
    assert machine.status is S.CREATED
    again = await world.rpc("machines.create", params)
    assert again["id"] == machine.id
    await world.bus.settle()
    assert len(created(world, machine.id)) == 1
    assert (await world.machine(machine.id)).status is S.READY
