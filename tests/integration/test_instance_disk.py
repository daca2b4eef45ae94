"""FLEET_INSTANCE_DISK_MB and FLEET_MAX_SNAPSHOTS on real local machines, every service and a
real daemon: a snapshot takes the disk its home's copy takes (measured on the host by
descriptor), one past the instance's budget is refused by name with the figures, nothing
copied; and snapshots asked for at once never pass the cap. The rules (forks, pauses, copies
at once): tests/fast/test_instance_disk.py, tests/fast/test_snapshot_cap_race.py."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from contracts.errors import DiskLimit, SnapshotLimit
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from tests.stop_checks import ready_machine


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, instance_disk_mb=30, max_snapshots=4)


async def test_a_snapshot_past_the_instance_disk_is_refused_by_name(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_machine(stack, "disk")
    # 12 MB the machine wrote: its home (12) and one snapshot (12) fit in 30; a second (12
    # more) does not.
    made = await stack.exec(mid, ["sh", "-c", "head -c 12582912 /dev/urandom > blob"])
    assert made.exit_code == 0, made.stderr
    first = await stack.snapshot_machine(mid, "one")
    machine = await stack.get_machine(mid)
    async with Store.of(stack_settings) as store:
        used = await store.disk.used(machine.instance_id)
    assert used[f"home:{mid}"] >= 12 << 20, used
    assert used[f"image:{first.id}"] >= 12 << 20, used
    with pytest.raises(DiskLimit) as refused:
        await stack.snapshot_machine(mid, "two")
    assert refused.value.code == 1061
    assert refused.value.data["limitMb"] == 30
    assert "FLEET_INSTANCE_DISK_MB" in refused.value.message
    assert [s.id for s in await stack.list_snapshots(machine.instance_id)] == [first.id]
    # Deleted, the first gives its place back.
    await stack.delete_snapshot(first.id)
    await stack.snapshot_machine(mid, "three")


async def test_snapshots_asked_at_once_never_pass_the_cap(stack: FleetClient) -> None:
    """30 machines.snapshot calls at once under FLEET_MAX_SNAPSHOTS=4: 4 snapshots, 26 refused
    with 1060, and no more than 4 kept on the host."""
    mid = await ready_machine(stack, "cap")
    results = await asyncio.gather(
        *(stack.snapshot_machine(mid, f"s{n}") for n in range(30)), return_exceptions=True
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SnapshotLimit)]
    assert (len(made), len(refused)) == (4, 26), [r for r in results if r not in made]
    machine = await stack.get_machine(mid)
    assert len(await stack.list_snapshots(machine.instance_id)) == 4
