"""A snapshot a machine is being made from is kept until that machine is made: its delete is
refused (1009 Conflict, naming the machine) from the create's answer, through the copy on the
provisioner, to the machine's ``ready``; the hold ends when the machine is ready, failed or
archived (a machine a crash left half made holds it until archived). A create from a snapshot
being deleted is refused (NotFound) and copies nothing. In memory: the real gateway,
provisioner and store (fakeredis), the fake bus and provider. On real servers:
tests/integration/test_snapshot_uses.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts.bus.events import MachineCreated
from contracts.errors import Conflict, NotFound
from contracts.status import MachineStatus as S
from tests.fast.conftest import World

method = pytest.mark.gateway_method
WAIT_S = 30.0
#: The ways from ``created`` to each status a machine made from a snapshot may be in.
_PATHS = {
    S.CREATED: [],
    S.PROVISIONING: [S.PROVISIONING],
    S.BOOTING: [S.PROVISIONING, S.BOOTING],
    S.SETTING_UP: [S.PROVISIONING, S.BOOTING, S.SETTING_UP],
    S.PROBING: [S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING],
    S.READY: [S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.READY],
    S.FAILED: [S.PROVISIONING, S.FAILED],
    S.ARCHIVED: [S.PROVISIONING, S.ARCHIVING, S.ARCHIVED],
}


async def _snapshot(world: World) -> tuple[str, str]:
    """A snapshot of a ready machine: its id and instance."""
    m = await world.ready_machine()
    snap = await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
    return snap["id"], m.instance_id


async def _made_from(world: World, snapshot_id: str, instance_id: str) -> str:
    made = await world.rpc("machines.create", {"instanceId": instance_id,
                                               "fromSnapshot": snapshot_id})  # fmt: skip
    return str(made["id"])


async def _delete(world: World, snapshot_id: str) -> Any:
    return await world.rpc("snapshots.delete", {"snapshotId": snapshot_id})


@method("snapshots.delete", "machines.create")
async def test_a_snapshot_is_kept_from_a_creates_answer_through_its_copy_to_its_ready(
    world: World,
) -> None:
    """Refused between the create's answer and the provisioner's copy, and during the copy
    (held open here), by name; the copy is made from it, the machine is ready, and then the
    delete goes through."""
    snapshot_id, inst = await _snapshot(world)
    mid = await _made_from(world, snapshot_id, inst)
    with pytest.raises(Conflict) as refused:  # accepted, not yet taken by a provisioner
        await _delete(world, snapshot_id)
    assert refused.value.data == {"machineId": mid, "status": "created"}
    assert mid in refused.value.message
    copying, go_on = asyncio.Event(), asyncio.Event()
    clone = world.provider.clone_home

    async def held_open(source_id: str, machine_id: str):  # type: ignore[no-untyped-def]
        copying.set()
        await go_on.wait()
        return await clone(source_id, machine_id)

    world.provider.clone_home = held_open  # type: ignore[method-assign]
    settled = asyncio.ensure_future(world.bus.settle())
    await asyncio.wait_for(copying.wait(), WAIT_S)
    with pytest.raises(Conflict) as during:
        await _delete(world, snapshot_id)
    assert during.value.data == {"machineId": mid, "status": "provisioning"}
    go_on.set()
    await asyncio.wait_for(settled, WAIT_S)
    assert (await world.machine(mid)).status is S.READY
    assert (snapshot_id, mid) in world.provider.clones
    assert await _delete(world, snapshot_id) == {"deleted": True}
    assert snapshot_id not in world.provider.snapshots


@method("snapshots.delete")
async def test_a_machine_holds_its_snapshot_until_it_is_ready_failed_or_archived(
    world: World,
) -> None:
    """Each status a machine made from the snapshot may be in: created, provisioning (its copy),
    booting, setting up and probing (a memory snapshot's image is restored at its start) hold
    the snapshot; ready, failed and archived let it go. A machine a crash left half made holds
    it until it is archived, as the refusal says."""
    for status, path in _PATHS.items():
        snapshot_id, inst = await _snapshot(world)
        mid = await _made_from(world, snapshot_id, inst)
        for step in path:
            assert (await world.store.transition(mid, step, "moved by the test")).moved, step
        if status in (S.READY, S.FAILED, S.ARCHIVED):
            assert await _delete(world, snapshot_id) == {"deleted": True}, status
            continue
        with pytest.raises(Conflict) as refused:
            await _delete(world, snapshot_id)
        assert refused.value.data == {"machineId": mid, "status": status.value}
        assert "archive" in refused.value.message
        assert snapshot_id in world.provider.snapshots, status
        await world.rpc("machines.archive", {"machineId": mid})
        await world.bus.settle()
        assert await _delete(world, snapshot_id) == {"deleted": True}, status


@method("snapshots.delete", "machines.create")
async def test_a_create_from_a_snapshot_being_deleted_is_refused_and_copies_nothing(
    world: World,
) -> None:
    """Once a delete is under way (its files being removed on the host), a create from that
    snapshot answers NotFound naming it; the machine its record was made for fails with that
    reason before any provisioner copies anything."""
    snapshot_id, inst = await _snapshot(world)
    dropping, go_on = asyncio.Event(), asyncio.Event()
    drop = world.provider.drop_snapshot

    async def held_open(snapshot_id: str) -> bool:
        dropping.set()
        await go_on.wait()
        return await drop(snapshot_id)

    world.provider.drop_snapshot = held_open  # type: ignore[method-assign]
    deleting = asyncio.ensure_future(_delete(world, snapshot_id))
    await asyncio.wait_for(dropping.wait(), WAIT_S)
    before = {m.id for m in await world.store.list_machines(inst)}
    with pytest.raises(NotFound, match=snapshot_id):
        await _made_from(world, snapshot_id, inst)
    go_on.set()
    assert await asyncio.wait_for(deleting, WAIT_S) == {"deleted": True}
    await world.bus.settle()
    late = [m for m in await world.store.list_machines(inst) if m.id not in before]
    assert [(m.status, snapshot_id in m.status_reason) for m in late] in ([], [(S.FAILED, True)])
    assert not [c for c in world.provider.clones if c[0] == snapshot_id]


async def test_a_create_delivered_again_after_its_snapshot_went_leaves_its_machine_be(
    world: World,
) -> None:
    """Once its machine is made the snapshot may go; its ``machine.created``, delivered again
    then (an acknowledgement lost), finds no snapshot and must not fail the machine."""
    snapshot_id, inst = await _snapshot(world)
    mid = await _made_from(world, snapshot_id, inst)
    await world.bus.settle()
    assert await _delete(world, snapshot_id) == {"deleted": True}
    [created] = world.bus.of(MachineCreated, mid)
    await world.bus.redeliver(created)
    await world.bus.settle()
    got = await world.machine(mid)
    assert got.status is S.READY, got.status_reason
