"""Copies of local machines' homes: a fork's home copied from its source's (a machine, running or
stopped, or a snapshot) as of one instant, a snapshot's kept on the homes' file system, what
they take on disk, and a machine's own files removed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import structlog

from base.keyed_locks import KeyedLocks
from contracts.bus.events import HomeCopy
from contracts.errors import NotSupported, ProviderError
from contracts.ids import SNAPSHOT_ID_RE
from providers import gvisor
from providers.disk_walk import home_disk
from providers.local.homes import clone_home, is_subvolume, remove_home
from providers.local.host import LocalHost
from providers.local.processes import code_store, first_process, owners, running_pid
from providers.sandbox import MachineCgroup, allocate_uid, give_upper, overlay_dirs
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)

#: In a machine's directory when its home was copied from another's: how (``HomeCopy``).
HOME_COPY_FILE = "home-copy.json"


class HomeCopies:
    """The homes' copies of this host's machines and snapshots."""

    def __init__(self, host: LocalHost) -> None:
        self._host = host
        #: One copy of a machine's home at a time: two would share one freeze, and the first
        #: to thaw would leave the second copying a machine that runs (or waiting for a
        #: freeze that never comes).
        self._copying = KeyedLocks()

    def snapshot_dir(self, snapshot_id: str) -> Path:
        """A snapshot of a home: on the homes' filesystem, the platform's alone."""
        return self._host.data_dir / "snapshots" / snapshot_id

    def snapshot_upper(self, snapshot_id: str) -> Path:
        """A snapshot's writes outside the home (its machine's overlay layer), beside it."""
        return self._host.data_dir / "snapshots" / f"{snapshot_id}.upper"

    def memory_dir(self, snapshot_id: str) -> Path:
        """A memory image of a gvisor machine, beside the copy of its home (the snapshot)."""
        return self._host.data_dir / "snapshots" / f"{snapshot_id}.memory"

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        target = self.snapshot_dir(snapshot_id)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        return await self._copy_home(
            machine_id, target, self.snapshot_upper(snapshot_id), readonly=True
        )

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        """The snapshot's home copy, layer and memory image removed (whichever were made: a
        failed take leaves some); False if it had no home copy."""
        target = self.snapshot_dir(snapshot_id)
        upper = self.snapshot_upper(snapshot_id)
        if upper.exists():
            await asyncio.to_thread(remove_tree, upper)
        await asyncio.to_thread(remove_tree, self.memory_dir(snapshot_id))
        if not target.exists():
            return False
        await asyncio.to_thread(remove_home, target)
        return True

    async def disk_bytes(self, source_id: str) -> int:
        """What a machine's home and layer, or a snapshot's copies and memory image, take on
        this host's disk (providers/disk_walk.py: never following a path the machine controls;
        a walk bounded, and a machine's charged to it: past the bound, at least what it saw)."""
        pid = None
        if SNAPSHOT_ID_RE.match(source_id):
            parts = [self.snapshot_dir(source_id), self.snapshot_upper(source_id),
                     self.memory_dir(source_id)]  # fmt: skip
        else:
            machine_dir = self._host.machine_dir(source_id)
            parts = [self._host.home(source_id), overlay_dirs(machine_dir)[0]]
            pid = await asyncio.to_thread(first_process, machine_dir, source_id)
        took = [(await home_disk(p, self._host.disk_walk, pid))[0] for p in parts]
        return sum(use.bytes for use in took if use is not None)

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        """``machine_id``'s home, ``source_id``'s as of one instant (a machine, running or
        stopped, or a snapshot); kept if already made (a redelivered create), as is how it was
        made."""
        host = self._host
        record = host.machine_dir(machine_id) / HOME_COPY_FILE
        if record.is_file():
            return msgspec.json.decode(record.read_bytes(), type=HomeCopy)
        target = host.home(machine_id)
        upper = overlay_dirs(host.machine_dir(machine_id))[0]
        if target.exists():  # a copy cut short: made again
            await asyncio.to_thread(remove_home, target)
        if upper.exists():
            await asyncio.to_thread(remove_tree, upper)
        if SNAPSHOT_ID_RE.match(source_id):
            copied = await self._from_snapshot(source_id, target, upper)
        else:
            copied = await self._copy_home(source_id, target, upper)
        if host.uids is not None and upper.is_dir():  # the source's writes: the fork's own
            mine = allocate_uid(host.machine_dir(machine_id) / "uid", host.machines, host.uids)
            await asyncio.to_thread(give_upper, upper, mine, host.uids)
        record.write_bytes(msgspec.json.encode(copied))
        log.info("provider.local_home_cloned", machine_id=machine_id, source=source_id,
                 how=copied.how, pause_ms=copied.pause_ms, took_ms=copied.took_ms)  # fmt: skip
        return copied

    async def _from_snapshot(self, source_id: str, target: Path, upper: Path) -> HomeCopy:
        """``target`` (and ``upper``) copied from snapshot ``source_id``: no process can change
        a snapshot, so no freeze; its memory image, if it has one, prepared for the fork's
        start to restore."""
        source = self.snapshot_dir(source_id)
        if not source.is_dir():
            raise ProviderError(f"snapshot {source_id} is not on this host")
        from_upper = self.snapshot_upper(source_id)
        copied = await asyncio.to_thread(
            clone_home, source, target, label=source_id, uid=None, cgroups=[],
            upper=(from_upper, upper) if from_upper.is_dir() else None,
        )  # fmt: skip
        if self.memory_dir(source_id).is_dir():  # its start restores the memory too
            memory = self.memory_dir(source_id)
            await asyncio.to_thread(gvisor.prepare_fork, memory, target.parent)
            (target.parent / gvisor.MARKER).write_text(source_id)
        return copied

    async def _copy_home(
        self, source_id: str, target: Path, upper: Path, readonly: bool = False
    ) -> HomeCopy:
        """``target``, a copy of machine ``source_id``'s home as of one instant, and ``upper``
        of what it wrote outside its home (an environment's overlay), if it has any."""
        host = self._host
        source_dir = host.machine_dir(source_id)
        if (source_dir / gvisor.UPPER).is_dir():  # its root's writes: another layer
            raise NotSupported(f"machine {source_id} runs an environment's image on gvisor: "
                               "a copy of it would lose what it wrote outside its home, so it "
                               "cannot be forked or snapshotted yet (docs/limitations.md)",
                               data={"runtime": "gvisor"})  # fmt: skip
        from_upper = overlay_dirs(source_dir)[0]
        uids = host.uids
        uid = None if uids is None else allocate_uid(source_dir / "uid", host.machines, uids)
        cgroups = [MachineCgroup(o) for o in owners(source_dir, source_id)]
        async with self._copying.held(source_id):
            running = await asyncio.to_thread(running_pid, source_dir, source_id) is not None
            return await asyncio.to_thread(
                clone_home, host.home(source_id), target, label=source_id, uid=uid,
                cgroups=cgroups, running=running, readonly=readonly,
                upper=(from_upper, upper) if from_upper.is_dir() else None,
            )  # fmt: skip


def remove_files(machine_dir: Path) -> None:
    """The machine's own files: by descriptor, never following a link it made nor crossing a
    mount (``scratch.remove_tree``)."""
    home = machine_dir / "home"
    if home.is_dir() and not home.is_symlink() and is_subvolume(home):
        remove_home(home)  # the subvolume as one: nothing in it is walked
    else:
        remove_tree(home)
    remove_tree(code_store(machine_dir))
