"""A snapshot deleted while a machine is made from it, on real servers (NATS, valkey, a local
machine's daemon, every service in this process): the delete is refused, naming the machine,
between the create's answer and the provisioner's copy, and the machine is made from it. The
rules case by case: tests/fast/test_snapshot_uses.py."""

from __future__ import annotations

import msgspec
import pytest

from contracts.errors import Conflict
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.stop_checks import ready_machine


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    """A host with room for one machine: the snapshot's source takes it, so the machine made
    from the snapshot waits, accepted, until the source is archived (the provisioner takes a
    create only while its host has room, docs/hosts.md)."""
    return msgspec.structs.replace(settings, host_capacity=1)


async def test_a_snapshot_deleted_before_its_copy_is_kept_for_the_machine_made_from_it(
    stack: FleetClient,
) -> None:
    source = await ready_machine(stack, "kept", "local")
    await stack.exec(source, ["sh", "-c", "echo kept > ~/kept.txt"])
    snap = await stack.snapshot_machine(source, "before")
    made = await stack.create_from_snapshot(snap.instance_id, snap.id)
    assert (await stack.get_machine(made.id)).status is MachineStatus.CREATED  # no room yet
    with pytest.raises(Conflict) as refused:  # a cleanup job meets a restore under way
        await stack.delete_snapshot(snap.id)
    assert refused.value.data == {"machineId": made.id, "status": "created"}
    await stack.archive_machine(source)  # its room goes to the machine made from the snapshot
    done = await stack.wait_for(made.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    assert (await stack.exec(made.id, ["cat", "kept.txt"])).stdout == "kept\n"
    assert await stack.delete_snapshot(snap.id)
    assert await stack.list_snapshots(snap.instance_id) == []
