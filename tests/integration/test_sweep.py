"""The host's sweeper (services/provisioner/sweep.py) on a real valkey: a local provider's data
dir left as takes leave it (tests/snapshot_shelf.py: no runsc needed), and a real docker
engine's snapshot volumes. An orphaned image (or volume) is swept; what a record or a fork to
restore holds, what was made just now, and another stack's volumes stay. The rule case by
case: tests/fast/test_sweep.py."""

from __future__ import annotations

import time
from pathlib import Path

from base.version import SOURCE_ROOT
from contracts.status import MachineStatus as S
from controlplane.settings import Settings
from controlplane.store import Store, disk as store_disk
from providers.docker import LABEL_SNAPSHOT, LABEL_STACK, snapshot_volume
from providers.docker.home import remove_volume, volume_exists
from providers.registry import docker_provider
from services.provisioner.sweep import GRACE_S, DockerShelf, LocalShelf, Sweeper
from tests.fakes.clock import ManualClock
from tests.snapshot_shelf import (
    counted,
    failed_take,
    fork_dir,
    local_shelf,
    machine_in,
    memory_image,
    recorded_snapshot,
)

FAILED, ABANDONED, PENDING = "s-00000000000000f1", "s-00000000000000f2", "s-00000000000000f3"
ORPHAN, OTHERS = "s-00000000000000d1", "s-00000000000000d2"


async def test_an_orphaned_image_is_swept(settings: Settings, store: Store) -> None:
    local = local_shelf(settings.data_path)
    instance = await store.create_instance("sweep")
    source = await machine_in(store, instance.id, S.READY)
    # Orphans: a take whose cleanup never ran, and a fork's image whose one fork was archived
    # before its restore (forks-left never reaches 0; its place in the disk budget stays).
    gone = failed_take(local, FAILED)
    gone += memory_image(local, ABANDONED, source.id, forks=1)
    await store.disk.settle(instance.id, store_disk.image(ABANDONED), 1 << 20)
    fork_dir(local, (await machine_in(store, instance.id, S.ARCHIVED)).id, ABANDONED)
    # Held: a recorded snapshot with memory, and a fork's image its fork is being restored from.
    snapshot = await recorded_snapshot(store, source, memory=True)
    kept = memory_image(local, snapshot, source.id, forks=None)
    other = await store.create_instance("restoring")
    source2 = await machine_in(store, other.id, S.READY)
    kept += memory_image(local, PENDING, source2.id, forks=1)
    fork_dir(local, (await machine_in(store, other.id, S.PROVISIONING)).id, PENDING)
    sweeper = Sweeper(store, [LocalShelf.of(local)], settings.host_id,
                      clock := ManualClock(start=time.time()))  # fmt: skip

    assert await sweeper.sweep() == []  # all made just now: young
    assert [p for p in [*gone, *kept] if not p.exists()] == []
    await clock.advance(GRACE_S + 60)
    removed = await sweeper.sweep()

    assert sorted(r.id for r in removed) == [FAILED, ABANDONED]
    assert all((r.bytes or 0) > 0 for r in removed)
    assert [p for p in gone if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []
    assert await counted(store, instance.id, ABANDONED) is None
    listed = sorted(
        p.name for p in Path(local.parts.copies.snapshot_dir(snapshot)).parent.iterdir()
    )
    assert listed == sorted(p.name for p in kept)


async def test_a_docker_snapshot_volume_no_record_holds_is_swept(
    settings: Settings, store: Store
) -> None:
    instance = await store.create_instance("docker-sweep")
    source = await machine_in(store, instance.id, S.READY, provider="docker")
    recorded = await recorded_snapshot(store, source, memory=False)
    async with docker_provider(settings, SOURCE_ROOT) as docker:
        engine = docker.docker
        # A copy cut short (its volume made, no record), a recorded one, and another stack's
        # on the same engine (its records are not in this store).
        made = {ORPHAN: docker.stack, recorded: docker.stack, OTHERS: f"{docker.stack}-other"}
        try:
            for image_id, stack in made.items():
                await engine.volumes.create({  # type: ignore[no-untyped-call]
                    "Name": snapshot_volume(image_id),
                    "Labels": {LABEL_STACK: stack, LABEL_SNAPSHOT: image_id},
                })  # fmt: skip
            sweeper = Sweeper(store, [DockerShelf(docker)], settings.host_id,
                              clock := ManualClock(start=time.time()))  # fmt: skip
            assert await sweeper.sweep() == []  # made just now
            await clock.advance(GRACE_S + 60)
            assert [r.id for r in await sweeper.sweep()] == [ORPHAN]
            assert not await volume_exists(engine, snapshot_volume(ORPHAN))
            assert await volume_exists(engine, snapshot_volume(recorded))
            assert await volume_exists(engine, snapshot_volume(OTHERS))
        finally:
            for image_id in made:
                await remove_volume(engine, snapshot_volume(image_id))
