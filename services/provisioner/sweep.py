"""This host's sweeper of snapshot copies and memory images that belong to no record: what a take
that failed or was cut short left, and the image of a fork with memory whose forks were archived
before any was restored (its count of forks to come never reaches 0). Each provisioner sweeps
its own host, at its start and every ``FLEET_SWEEP_INTERVAL_S``: the local provider's
``<data>/snapshots`` (``<id>``, ``<id>.upper``, ``<id>.memory``: LocalProvider's layout) and
its stack's docker snapshot volumes (``fleet-<id>-snapshot``, with the layer image kept for
it), each only once a machine of that provider ran on this host.

An id's copies stay while any of these holds:
- a snapshot record has the id (store.snapshots);
- a take of it is under way: its place in its instance's disk budget is reserved and has not
  lapsed (controlplane/store/disk.py), or its place under the instance's snapshot cap is
  (controlplane/store/snapshots.py) and its disk place is not settled yet (a cap's place is
  held for an hour: a gateway that died after the take, before the record, holds nothing);
- a machine that is neither failed nor archived names it in its marker (a fork with memory not
  restored yet: providers/gvisor/fork.py MARKER);
- it is a memory image and its source's instance has a machine not provisioned yet (a fork
  whose ``machine.created`` is still queued has written no marker; one being restored has
  just removed its marker and not yet counted itself);
- the platform made or changed it within ``grace_s`` (a directory's newest ctime: a copy keeps
  the times of the machine's files, which the machine sets, but no one sets a ctime; a
  volume's creation): the moments between a take's end and its snapshot's or forks' records.
Otherwise its copies are removed as a deleted snapshot's are (the provider's drop_snapshot: by
descriptor, following no link), and its place in its instance's disk budget is given back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, Self

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import ProviderError
from contracts.ids import SNAPSHOT_ID_RE
from contracts.models import Machine
from contracts.status import NOT_PROVISIONED, TERMINAL
from controlplane.store import Store, disk as store_disk
from providers.docker import LABEL_SNAPSHOT, LABEL_STACK, DockerProvider, snapshot_volume
from providers.gvisor import MARKER, SOURCE_FILE
from providers.local import LocalProvider

log = structlog.get_logger(__name__)

#: Copies the platform made or changed this recently stay, whatever the records say.
GRACE_S = 900.0
#: A machine not provisioned yet: a fork of it may still come for its memory image.
#: Any id: only the directory it is kept in is asked of the provider.
_PROBE = "s-0000000000000000"
#: A marker or a source file is a line the platform wrote: more is not one.
_SMALL = 4096
#: The disk budget's field of a snapshot's or memory image's copies, less the id.
_IMAGE = store_disk.image("")


@dataclass(frozen=True)
class Copies:
    """One id's copies on this host."""

    id: str
    #: When the platform last made or changed them, epoch seconds.
    changed_s: float
    #: A memory image's source machine (None: not one, or not described yet).
    source: str | None = None


@dataclass(frozen=True)
class Held:
    """The ids whose copies are in use, and the machines whose memory images may be."""

    recorded: frozenset[str] = frozenset()
    reserved: frozenset[str] = frozenset()
    marked: frozenset[str] = frozenset()
    #: Source machines whose instance has a machine not provisioned yet.
    waiting: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Removed:
    id: str
    #: What its copies took on disk (None: not measured, a docker volume's).
    bytes: int | None


def orphans(found: Iterable[Copies], held: Held, now_s: float, grace_s: float) -> list[str]:
    """The ids of ``found`` no record, take, marker or fork to come holds, older than grace."""
    kept = held.recorded | held.reserved | held.marked
    return [
        c.id
        for c in found
        if c.id not in kept
        and (c.source is None or c.source not in held.waiting)
        and now_s - c.changed_s >= grace_s
    ]


def held_by_machines(machines: Iterable[Machine], markers: dict[str, str],
                     found: Iterable[Copies]) -> tuple[frozenset[str], frozenset[str]]:  # fmt: skip
    """(the images a live machine's marker names, the sources of ``found`` whose instance has
    a machine not provisioned yet); ``markers``: machine id -> the image its marker names."""
    by_id = {m.id: m for m in machines}
    marked = {image for mid, image in markers.items()
              if (m := by_id.get(mid)) is not None and m.status not in TERMINAL}  # fmt: skip
    pending = {m.instance_id for m in by_id.values() if m.status in NOT_PROVISIONED}
    waiting = {c.source for c in found
               if c.source is not None and (m := by_id.get(c.source)) is not None
               and m.instance_id in pending}  # fmt: skip
    return frozenset(marked), frozenset(waiting)


class Shelf(Protocol):
    """Where one provider keeps this host's snapshots' copies and memory images."""

    #: The provider whose machines' copies these are.
    provider: str

    async def copies(self) -> list[Copies]: ...
    async def markers(self) -> dict[str, str]: ...
    async def remove(self, image_id: str) -> int | None: ...


class LocalLayout(Protocol):
    """The local provider's layout of snapshots and memory images, and what it does with them
    (providers/local/home_copies.py ``HomeCopies``)."""

    def snapshot_dir(self, snapshot_id: str) -> Path: ...
    def snapshot_upper(self, snapshot_id: str) -> Path: ...
    def memory_dir(self, snapshot_id: str) -> Path: ...
    async def drop_snapshot(self, snapshot_id: str) -> bool: ...
    async def disk_bytes(self, source_id: str) -> int: ...


class LocalShelf:
    """The local provider's ``<data>/snapshots`` (``local``: its ``HomeCopies``), and the
    markers of its machines (the directories under ``machines``)."""

    provider = "local"

    def __init__(self, local: LocalLayout, machines: Path) -> None:
        self.local = local
        self.machines = machines

    @classmethod
    def of(cls, provider: LocalProvider) -> Self:
        """The shelf of ``provider``'s data directory."""
        return cls(provider.parts.copies, provider.parts.host.machines)

    async def copies(self) -> list[Copies]:
        return await asyncio.to_thread(on_disk, self.local)

    async def markers(self) -> dict[str, str]:
        return await asyncio.to_thread(markers, self.machines)

    async def remove(self, image_id: str) -> int:
        took = await self.local.disk_bytes(image_id)
        await self.local.drop_snapshot(image_id)
        return took


def on_disk(local: LocalLayout) -> list[Copies]:
    """Every id with a copy in the snapshots directory (names of another kind are left)."""
    try:
        names = os.listdir(local.snapshot_dir(_PROBE).parent)
    except FileNotFoundError:
        return []
    ids = {i for n in names if SNAPSHOT_ID_RE.match(i := n.partition(".")[0])}
    return [c for i in sorted(ids) if (c := _copies(local, i)) is not None]


def _copies(local: LocalLayout, image_id: str) -> Copies | None:
    memory = local.memory_dir(image_id)
    paths = [local.snapshot_dir(image_id), local.snapshot_upper(image_id), memory]
    times = [st.st_ctime for p in [*paths, *_entries(memory)] if (st := _lstat(p)) is not None]
    if not times:  # removed meanwhile
        return None
    source = _small_line(memory / SOURCE_FILE)
    return Copies(image_id, max(times), Path(source).name if source else None)


def _entries(directory: Path) -> list[Path]:
    try:
        return [directory / e.name for e in os.scandir(directory)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _small_line(path: Path) -> str | None:
    """A file the platform wrote (never following a link), stripped; None if absent or big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = f.read(_SMALL + 1)
    except OSError:  # absent, a directory, or a link (not the platform's file)
        return None
    return None if len(data) > _SMALL else data.decode(errors="replace").strip()


def markers(root: Path) -> dict[str, str]:
    """Each machine directory's marker (``root``: the machines' directory): machine id -> the
    memory image it is to be restored from (a fork with memory not restored yet)."""
    try:
        machine_ids = os.listdir(root)
    except FileNotFoundError:
        return {}
    found = {mid: _small_line(root / mid / MARKER) for mid in machine_ids}
    return {mid: image for mid, image in found.items() if image and SNAPSHOT_ID_RE.match(image)}


class DockerShelf:
    """This stack's docker snapshot volumes (providers/docker/fork.py); no memory images."""

    provider = "docker"

    def __init__(self, docker: DockerProvider) -> None:
        self.docker = docker

    async def copies(self) -> list[Copies]:
        labels = [f"{LABEL_STACK}={self.docker.stack}", LABEL_SNAPSHOT]
        volumes = self.docker.docker.volumes
        listed = await volumes.list(filters={"label": labels})  # type: ignore[no-untyped-call]
        found = []
        for volume in listed.get("Volumes") or []:
            image_id = (volume.get("Labels") or {}).get(LABEL_SNAPSHOT, "")
            if SNAPSHOT_ID_RE.match(image_id) and volume["Name"] == snapshot_volume(image_id):
                found.append(Copies(image_id, _created_s(volume.get("CreatedAt"))))
        return found

    async def markers(self) -> dict[str, str]:
        return {}

    async def remove(self, image_id: str) -> None:
        await self.docker.drop_snapshot(image_id)  # its volume, and its layer's tag


def _created_s(created: object) -> float:
    """A volume's creation (the engine's RFC 3339), epoch seconds; unreadable: never old."""
    try:
        return datetime.fromisoformat(str(created)).timestamp()
    except ValueError:
        return float("inf")


class Sweeper:
    """One sweep of this host's shelves per ``sweep()`` (a Ticker's round): see the module's
    docstring."""

    def __init__(self, store: Store, shelves: Sequence[Shelf], host_id: str,
                 clock: Clock = SYSTEM_CLOCK, grace_s: float = GRACE_S) -> None:  # fmt: skip
        self.store = store
        self.shelves = shelves
        self.host_id = host_id
        self.clock = clock
        self.grace_s = grace_s

    async def sweep(self) -> list[Removed]:
        """One round: the ids nothing holds, removed (and logged); a shelf only once a machine
        of its provider ran here (a host with no docker engine is never asked for one)."""
        machines = await self.store.list_machines()
        ran = {m.provider for m in machines if m.host_id in (None, self.host_id)}
        removed: list[Removed] = []
        for shelf in self.shelves:
            if shelf.provider in ran:
                removed += await self._sweep(shelf, machines)
        return removed

    async def _sweep(self, shelf: Shelf, machines: list[Machine]) -> list[Removed]:
        found = await shelf.copies()
        if not found:
            return []
        marked, waiting = held_by_machines(machines, await shelf.markers(), found)
        reserved, ledger = await self._ledgers(machines)
        # After the reservations: a snapshot's record replaces its reservation in one step.
        recorded = await self._recorded([c.id for c in found])
        held = Held(recorded, reserved, marked, waiting)
        removed = [r for i in orphans(found, held, self.clock.now(), self.grace_s)
                   if (r := await self._remove(shelf, i, ledger.get(i))) is not None]  # fmt: skip
        if removed:
            log.info("sweep.removed", provider=shelf.provider, ids=[r.id for r in removed],
                     bytes=sum(r.bytes or 0 for r in removed))  # fmt: skip
        return removed

    async def _remove(self, shelf: Shelf, image_id: str, instance_id: str | None) -> Removed | None:
        """The id's copies removed, and their place in its instance's disk budget given back
        (``instance_id``: the instance whose budget counts them, if one does)."""
        try:
            took = await shelf.remove(image_id)
        except (OSError, ProviderError) as exc:  # the next round tries again
            log.warning("sweep.remove_failed", image_id=image_id, error=str(exc))
            return None
        if instance_id is not None:
            await self.store.disk.forget(instance_id, store_disk.image(image_id))
        return Removed(image_id, took)

    async def _recorded(self, ids: list[str]) -> frozenset[str]:
        """Those of ``ids`` a snapshot record has."""
        keys = self.store.keys
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.exists(keys.k_snapshot(i))
            found = await pipe.execute()
        return frozenset(i for i, n in zip(ids, found, strict=True) if n)

    async def _ledgers(self, machines: list[Machine]) -> tuple[frozenset[str], dict[str, str]]:
        """(the ids whose take holds a place not lapsed, in an instance's disk budget or its
        snapshot cap; each id an instance's disk budget counts -> that instance), of every
        instance."""
        keys, now_ms = self.store.keys, int(self.clock.now() * 1000)
        listed = await self.store.redis.zrange(keys.K_INSTANCES, 0, -1)
        instances = sorted({*listed, *(m.instance_id for m in machines)})
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for iid in instances:
                pipe.zrangebyscore(keys.k_instance_disk_reservations(iid), now_ms, "+inf")
                pipe.zrangebyscore(keys.k_instance_snapshot_reservations(iid), now_ms, "+inf")
                pipe.hkeys(keys.k_instance_disk(iid))
            got = await pipe.execute()
        reserved: set[str] = set()
        ledger: dict[str, str] = {}
        for n, iid in enumerate(instances):
            disk, snapshots, fields = got[3 * n : 3 * n + 3]
            counted = {_image_id(f) for f in fields if f.startswith(_IMAGE)}
            # A place under the snapshot cap holds copies only until they are made (their
            # disk place settled, or lapsed): then the record comes within the grace, or never
            # (a gateway that died first), and the cap's place lapses only after an hour.
            reserved |= {_image_id(f) for f in disk} | (set(snapshots) - counted)
            ledger |= dict.fromkeys(counted, iid)
        return frozenset(reserved), ledger


def _image_id(field: str) -> str:
    """The id an ``image:<id>`` field of a disk budget names (another field: itself)."""
    return field.removeprefix(_IMAGE)
