"""machines.create's idempotencyKey rules, in memory (the real store's Lua on fakeredis).

Beside tests/integration/test_create_once.py (the real gateway, valkey and NATS: concurrency,
tenants, a lost answer), not instead of it."""

from __future__ import annotations

import pytest

from contracts.bus.events import MachineArchived, MachineCreated
from contracts.errors import Conflict, FleetError, IdempotencyKeyReused
from contracts.status import MachineStatus as S
from services.gateway.auth import Caller
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


async def rebuild(world: World, instance_id: str, key: str) -> dict[str, object]:
    answer: dict[str, object] = await world.rpc(
        "machines.rebuild", {"instanceId": instance_id, "idempotencyKey": key}
    )
    return answer


async def test_a_repeated_rebuild_answers_its_machine_and_archives_nothing_more(
    world: World,
) -> None:
    """Before: a retried rebuild archived the machine the first one made and made a third."""
    old = await world.ready_machine()
    first = await rebuild(world, old.instance_id, "rebuild-key-0001")
    await world.bus.settle()
    again = await rebuild(world, old.instance_id, "rebuild-key-0001")
    assert again["id"] == first["id"]
    assert again["status"] == S.READY.value  # not archived by the repeat
    machines = await world.store.list_machines(old.instance_id)
    assert {m.id: m.status for m in machines} == {first["id"]: S.READY, old.id: S.ARCHIVED}
    assert len(world.bus.of(MachineArchived, old.id)) == 1
    assert len(created(world, str(first["id"]))) == 1
    # A new key is a new rebuild.
    third = await rebuild(world, old.instance_id, "rebuild-key-0002")
    assert third["id"] not in (first["id"], old.id)


async def test_a_rebuild_key_is_not_a_create_key(world: World) -> None:
    inst = await world.instance()
    params = {"instanceId": inst.id, "idempotencyKey": "k-0000003"}
    made = await world.rpc("machines.create", params)
    with pytest.raises(IdempotencyKeyReused) as caught:  # the same key, another method
        await rebuild(world, inst.id, "k-0000003")
    assert caught.value.data == {"machineId": made["id"]}
    other = await world.instance("other")
    await rebuild(world, inst.id, "k-0000004")
    with pytest.raises(IdempotencyKeyReused):  # the same key, another instance
        await rebuild(world, other.id, "k-0000004")


async def test_a_rebuild_whose_events_failed_is_finished_by_the_retry(world: World) -> None:
    """The new record was written, then archiving the old machine (its event) failed: the
    retry archives it and publishes the new machine's machine.created, once each."""
    old = await world.ready_machine()
    world.bus.fail_publish(MachineArchived)
    with pytest.raises(FleetError):
        await rebuild(world, old.instance_id, "rebuild-key-0003")
    await world.bus.settle()
    [new] = [m for m in await world.store.list_machines(old.instance_id) if m.id != old.id]
    assert new.status is S.CREATED
    assert world.bus.of(MachineArchived, old.id) == []
    again = await rebuild(world, old.instance_id, "rebuild-key-0003")
    assert again["id"] == new.id
    await world.bus.settle()
    assert len(world.bus.of(MachineArchived, old.id)) == 1
    assert len(created(world, new.id)) == 1
    assert (await world.machine(new.id)).status is S.READY
    assert world.provider.removes == [old.id]


async def test_a_repeat_republishes_while_the_machine_is_still_created(world: World) -> None:
    """Whether or not the first publish went out, a retry that finds the machine still
    `created` publishes machine.created again with the same id: the stream drops it as a
    duplicate (inside its window; after it, the provisioner's compare-and-set skips it)."""
    inst = await world.instance()
    params = {"instanceId": inst.id, "idempotencyKey": "k-0000005"}
    first = await world.rpc("machines.create", params)  # published, not yet delivered
    again = await world.rpc("machines.create", params)
    assert again["id"] == first["id"]
    assert world.bus.duplicates == 1
    await world.bus.settle()
    assert len(created(world, first["id"])) == 1
    assert (await world.machine(first["id"])).status is S.READY
