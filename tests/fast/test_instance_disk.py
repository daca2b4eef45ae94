"""FLEET_INSTANCE_DISK_MB (controlplane/store/disk.py, services/provisioner/disk.py): an
instance's homes, paused images and snapshots share one budget; each copy takes its place
before it starts, at once with the sum, and gives it back when it fails or goes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.errors import DiskLimit
from contracts.status import MachineStatus as S
from controlplane.store import Store, disk as store_disk
from services.provisioner.disk import DiskBudget
from tests.fast.conftest import World
from tests.fast.test_pause import ready_gvisor
from tests.waiters import wait_until

method = pytest.mark.gateway_method
MB = store_disk.MB


async def test_reservations_at_once_never_pass_the_limit_and_lapse(store: Store) -> None:
    ledger = store.disk
    tries = [ledger.reserve("i-1", f"image:s-{n}", 30 * MB, 100, "a copy") for n in range(10)]
    results = await asyncio.gather(*tries, return_exceptions=True)
    refused = [r for r in results if isinstance(r, DiskLimit)]
    assert len(refused) == 7
    assert refused[0].code == 1061
    assert refused[0].http_status == 409
    assert refused[0].data == {"limitMb": 100, "usedMb": 90, "neededMb": 30}
    assert "90 MB of disk of its 100 MB" in refused[0].message
    # Settled smaller, given back, or lapsed: the room comes back.
    await ledger.settle("i-1", "image:s-0", 5 * MB)
    await ledger.forget("i-1", "image:s-1")
    await ledger.reserve("i-1", "image:s-10", 60 * MB, 100, "a copy", hold_s=0.0)
    await ledger.reserve("i-1", "image:s-11", 60 * MB, 100, "a copy")  # s-10's lapsed
    assert await ledger.used("i-1") == {"image:s-0": 5 * MB, "image:s-2": 30 * MB,
                                        "image:s-11": 60 * MB}  # fmt: skip
    await ledger.reserve("i-2", "image:s-12", 100 * MB, 100, "a copy")  # another instance's


async def test_a_place_no_copy_renews_is_counted_no_more_once_it_lapses(store: Store) -> None:
    """The place of a copy whose provisioner died (a restart mid-take) is not counted past its
    hold: it was counted for an hour, a machine's whole memory limit for a memory image that
    never came, until the instance's next copy (found by the soak, seed 3)."""
    await store.disk.settle("i-1", "home:m-1", 2 * MB)
    await store.disk.reserve("i-1", "image:s-1", 1024 * MB, 0, "a memory image", hold_s=0.05)
    assert await store.disk.used("i-1") == {"home:m-1": 2 * MB, "image:s-1": 1024 * MB}
    assert await store.disk.places("i-1") == ["image:s-1"]  # a place, not a measure

    async def lapsed() -> bool:
        return await store.disk.used("i-1") == {"home:m-1": 2 * MB}

    await wait_until(lapsed, timeout=10)
    assert await store.disk.places("i-1") == []


async def test_a_copy_under_way_renews_its_place_and_settles_it(store: Store) -> None:
    budget = DiskBudget(store, 0, lambda _: asyncio.sleep(0, 0), hold_s=0.1)
    reservations = store.keys.k_instance_disk_reservations("i-1")
    async with budget.held("i-1", "image:s-1", 3 * MB, "a copy"):
        first = await store.redis.zscore(reservations, "image:s-1")
        assert first is not None

        async def renewed_past_its_hold() -> bool:
            now = await store.redis.zscore(reservations, "image:s-1")
            return now is not None and now > first + 200  # twice its hold later, still held

        await wait_until(renewed_past_its_hold, timeout=10)
        assert await store.disk.used("i-1") == {"image:s-1": 3 * MB}
    await store.disk.settle("i-1", "image:s-1", 2 * MB)
    assert await store.disk.used("i-1") == {"image:s-1": 2 * MB}
    assert await store.disk.places("i-1") == []  # measured now
    assert await store.redis.zscore(reservations, "image:s-1") is None


@method("machines.snapshot", "machines.fork", "snapshots.delete", "machines.pause")
async def test_snapshots_forks_and_pauses_take_their_place_in_the_instance_disk(
    world: World,
) -> None:
    world.provisioner.machines.disk.limit_mb = 150
    m = await world.ready_machine()
    world.provider.disk[m.id] = 60 * MB
    snap = await world.rpc("machines.snapshot", {"machineId": m.id, "name": "one"})
    used = await world.store.disk.used(m.instance_id)
    assert used == {f"home:{m.id}": 60 * MB, f"image:{snap['id']}": 60 * MB}
    with pytest.raises(DiskLimit) as refused:  # 120 of 150 MB used: 60 more do not fit
        await world.rpc("machines.snapshot", {"machineId": m.id, "name": "two"})
    assert refused.value.data == {"limitMb": 150, "usedMb": 120, "neededMb": 60}
    assert len(world.provider.snapshots) == 1
    # A fork's home: its provisioner refuses the copy by name, and the fork fails.
    forks = await world.rpc("machines.fork", {"machineId": m.id})
    await world.bus.settle()
    fork = await world.machine(forks["machines"][0]["id"])
    assert fork.status is S.FAILED
    assert "FLEET_INSTANCE_DISK_MB" in fork.status_reason
    # Deleted, the snapshot gives its place back; a fork fits then.
    await world.rpc("snapshots.delete", {"snapshotId": snap["id"]})
    forks = await world.rpc("machines.fork", {"machineId": m.id})
    await world.bus.settle()
    fork = await world.machine(forks["machines"][0]["id"])
    assert fork.status is S.READY, fork.status_reason
    assert (await world.store.disk.used(m.instance_id))[f"home:{fork.id}"] == 60 * MB


@method("machines.pause")
async def test_a_pause_past_the_instance_disk_is_refused_and_the_machine_runs_on(
    world: World, tmp_path: Path
) -> None:
    """A paused image takes at most the machine's memory (1024 MB by default): held before
    the checkpoint."""
    world.provisioner.machines.disk.limit_mb = 1100
    m = await ready_gvisor(world, tmp_path)
    world.provider.disk[m.id] = 90 * MB
    await world.store.disk.settle(m.instance_id, f"home:{m.id}", 90 * MB)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    got = await world.machine(m.id)
    assert got.status is S.READY, got.status_reason
    assert "FLEET_INSTANCE_DISK_MB" in got.status_reason
    assert world.provider.pauses == []
    # With room, the pause holds what its image took, and the resume gives it back.
    world.provisioner.machines.disk.limit_mb = 2000
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.PAUSED
    assert (await world.store.disk.used(m.instance_id))[f"paused:{m.id}"] == 4096
    await world.rpc("machines.resume", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.READY
    assert f"paused:{m.id}" not in await world.store.disk.used(m.instance_id)
