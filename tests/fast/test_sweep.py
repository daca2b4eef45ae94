"""The host's sweeper of snapshot copies and memory images no record holds
(services/provisioner/sweep.py): the rule (which ids go, given records, takes under way,
markers, forks to come and ages), then whole sweeps of a local provider's snapshots directory
on the real store's scripts (fakeredis) and a manual clock. The same on valkey:
tests/integration/test_sweep.py."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.store import F_HOST_ID, Store, disk as store_disk
from services.provisioner.sweep import (
    GRACE_S,
    Copies,
    Held,
    LocalShelf,
    Sweeper,
    held_by_machines,
    orphans,
)
from tests.fakes.clock import ManualClock
from tests.snapshot_shelf import (
    counted,
    failed_take,
    fork_dir,
    home_copy,
    local_shelf,
    machine_in,
    memory_image,
    recorded_snapshot,
)

NOW = 1_000_000.0
OLD = NOW - GRACE_S
A, B = "s-000000000000000a", "s-000000000000000b"
HOST = "host-a"


@pytest.mark.parametrize(
    ("copies", "held", "swept"),
    [
        (Copies(A, OLD), Held(), [A]),
        (Copies(A, OLD + 1), Held(), []),  # changed within the grace
        (Copies(A, OLD), Held(recorded=frozenset({A})), []),
        (Copies(A, OLD), Held(reserved=frozenset({A})), []),
        (Copies(A, OLD), Held(marked=frozenset({A})), []),
        (Copies(A, OLD, source="m-src"), Held(waiting=frozenset({"m-src"})), []),
        (Copies(A, OLD, source="m-src"), Held(waiting=frozenset({"m-other"})), [A]),
        (Copies(A, OLD), Held(recorded=frozenset({B}), marked=frozenset({B})), [A]),
    ],
)
def test_the_rule(copies: Copies, held: Held, swept: list[str]) -> None:
    assert orphans([copies], held, NOW, GRACE_S) == swept


def _machine(mid: str, instance_id: str, status: S) -> Machine:
    at = datetime.now(UTC)
    return Machine(id=mid, instance_id=instance_id, provider="local", status=status,
                   status_reason="", created_at=at, updated_at=at)  # fmt: skip


def test_a_marker_holds_while_its_fork_lives_and_a_queued_fork_holds_its_instances_images() -> None:
    machines = [
        _machine("m-restoring", "i-1", S.PROVISIONING), _machine("m-booted", "i-2", S.READY),
        _machine("m-archived", "i-2", S.ARCHIVED), _machine("m-failed", "i-2", S.FAILED),
        _machine("m-src1", "i-1", S.READY), _machine("m-src2", "i-2", S.READY),
    ]  # fmt: skip
    markers = {"m-restoring": "s-1", "m-booted": "s-2", "m-archived": "s-3", "m-failed": "s-4",
               "m-no-record": "s-5"}  # fmt: skip
    found = [Copies("s-6", OLD, "m-src1"), Copies("s-7", OLD, "m-src2"), Copies("s-8", OLD)]
    marked, waiting = held_by_machines(machines, markers, found)
    assert marked == {"s-1", "s-2"}
    # i-1 has a machine not provisioned yet: a fork of m-src1 may still come for s-6.
    assert waiting == {"m-src1"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


async def test_what_a_take_cut_short_left_is_swept_once_its_place_lapses(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    local = local_shelf(tmp_path / "data")
    instance = await store.create_instance("swept")
    await machine_in(store, instance.id, S.READY)  # the take's source
    left = failed_take(local, A)  # its provisioner killed mid-take: no cleanup ran
    for path in left[:2]:  # its machine had set its home's times far ahead: no matter
        os.utime(path, (4102444800, 4102444800), follow_symlinks=False)
    # Held as long as a take under way renews its place (services/provisioner/disk.py).
    await store.disk.reserve(instance.id, store_disk.image(A), 1 << 20, 0, "the take",
                             hold_s=GRACE_S + 120)  # fmt: skip
    sweeper = Sweeper(store, [LocalShelf.of(local)], HOST, clock)
    assert await sweeper.sweep() == []  # just made
    await clock.advance(GRACE_S + 60)
    assert await sweeper.sweep() == []  # its take may still be under way: its place is held
    await clock.advance(120)  # no longer renewed: its provisioner is gone
    removed = await sweeper.sweep()
    assert [r.id for r in removed] == [A]
    assert (removed[0].bytes or 0) >= 65536  # measured before it went
    assert [p for p in left if p.exists()] == []
    assert await counted(store, instance.id, A) is None  # its place given back


async def test_a_snapshot_whose_gateway_died_before_its_record_is_swept_past_the_grace(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    """A gateway that died between a snapshot's take and its record: the take settled its
    place in the disk budget, the snapshot's place under the instance's cap is held for an
    hour (it lapses on its own), and no record comes. Once its copies are made, the cap's
    place holds them no more: they go once the grace has passed (found by the soak: a memory
    snapshot cut by a gateway restart left its 120 MB after every archive)."""
    local = local_shelf(tmp_path / "data")
    instance = await store.create_instance("cut")
    source = await machine_in(store, instance.id, S.READY)
    image = memory_image(local, A, source.id, forks=None)
    assert await store.snapshots.reserve(instance.id, A, 10) is None
    await store.disk.settle(instance.id, store_disk.image(A), 1 << 20)
    sweeper = Sweeper(store, [LocalShelf.of(local)], HOST, clock)
    assert await sweeper.sweep() == []  # made just now: its record may be on its way
    await clock.advance(GRACE_S + 60)
    assert [r.id for r in await sweeper.sweep()] == [A]
    assert [p for p in image if p.exists()] == []
    assert await counted(store, instance.id, A) is None


async def test_a_fork_image_whose_forks_were_archived_unrestored_is_swept(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    local = local_shelf(tmp_path / "data")
    instance = await store.create_instance("forked")
    source = await machine_in(store, instance.id, S.READY)
    image = memory_image(local, A, source.id, forks=2)
    await store.disk.settle(instance.id, store_disk.image(A), 1 << 20)
    # One fork took its marker and was archived before its restore; the other was archived
    # before its provisioner took it (no directory at all): forks-left never reaches 0.
    restored_never = await machine_in(store, instance.id, S.ARCHIVED)
    fork_dir(local, restored_never.id, A)
    await machine_in(store, instance.id, S.ARCHIVED)
    # A plain copy cut short just now, whose machine had set its home's times to 1970 (a copy
    # keeps them): not old for that.
    copy = home_copy(local, B)
    for path in copy:
        os.utime(path, (1, 1), follow_symlinks=False)
    sweeper = Sweeper(store, [LocalShelf.of(local)], HOST, clock)
    assert await sweeper.sweep() == []  # made just now: its forks' records may be on their way
    await clock.advance(GRACE_S + 60)
    assert [r.id for r in await sweeper.sweep()] == [A, B]
    assert [p for p in [*image, *copy] if p.exists()] == []
    assert await counted(store, instance.id, A) is None


async def test_a_record_a_fork_to_restore_or_to_come_keeps_its_image(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    local = local_shelf(tmp_path / "data")
    kept: list[Path] = []
    # A snapshot with memory, recorded.
    one = await store.create_instance("recorded")
    source = await machine_in(store, one.id, S.READY)
    snapshot = await recorded_snapshot(store, source, memory=True)
    kept += memory_image(local, snapshot, source.id, forks=None)
    # A fork's image, its fork booted from a retried restore that still has its marker.
    two = await store.create_instance("marked")
    source2 = await machine_in(store, two.id, S.READY)
    kept += memory_image(local, A, source2.id, forks=1)
    fork_dir(local, (await machine_in(store, two.id, S.READY)).id, A)
    # A fork's image whose forks' machine.created are still queued: no marker yet.
    three = await store.create_instance("queued")
    source3 = await machine_in(store, three.id, S.READY)
    kept += memory_image(local, B, source3.id, forks=1)
    await machine_in(store, three.id, S.CREATED)
    # Not a copy of the layout: not the sweeper's.
    (other := local.parts.copies.snapshot_dir(A).parent / "lost+found").mkdir()
    kept.append(other)
    await clock.advance(GRACE_S + 60)
    assert await Sweeper(store, [LocalShelf.of(local)], HOST, clock).sweep() == []
    assert [p for p in kept if not p.exists()] == []


class Untouchable:
    """A shelf that must not be asked (a docker engine this host never ran a machine on)."""

    provider = "docker"

    async def copies(self) -> list[Copies]:
        raise AssertionError("a shelf of a provider that never ran here was asked")

    async def markers(self) -> dict[str, str]:
        return {}

    async def remove(self, image_id: str) -> None:
        raise AssertionError(image_id)


async def test_a_providers_shelf_is_asked_only_once_one_of_its_machines_ran_here(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    instance = await store.create_instance("local-only")
    await machine_in(store, instance.id, S.READY)
    elsewhere = await machine_in(store, instance.id, S.READY, provider="docker")
    await store.redis.hset(store.keys.k_machine(elsewhere.id), F_HOST_ID, "host-b")
    sweeper = Sweeper(store, [LocalShelf.of(local_shelf(tmp_path / "data")), Untouchable()], HOST,
                      clock)  # fmt: skip
    assert await sweeper.sweep() == []
    await machine_in(store, instance.id, S.READY, provider="docker")  # no host yet: maybe here
    with pytest.raises(AssertionError, match="never ran here"):
        await sweeper.sweep()
