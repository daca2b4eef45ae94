"""What a machine's home takes on disk, measured without letting the machine make that the
host's work (docs/monitoring.md#machines-metrics).

A home holds whatever its machine wrote there: millions of entries, if it likes. Walked by the
provisioner (host root, outside every machine's cgroup) in a thread of its default executor,
the one that starts machines, such a home took that thread for as long as the walk ran, every
minute, and its CPU and I/O from everyone. So:

- where the home's file system keeps the figure itself (a btrfs subvolume of a file system with
  quotas on: its qgroup's ``referenced`` bytes in sysfs), it is read there, and nothing walks;
- else the home is walked by a process of its own (``python -m providers.disk_walk``, by
  descriptor: base/hostile_fs.py ``disk_use``), started inside the machine's own cgroups (those
  of its first process, ``process_groups``: memory, CPU, pids, block I/O), so its work is
  charged to the machine and held to the machine's limits; no thread of the provisioner waits
  for it (an asyncio child);
- the walk stops after ``WalkBound.entries`` entries (``FLEET_DISK_WALK_ENTRIES``) or
  ``WalkBound.seconds`` (``FLEET_DISK_WALK_S``), and is killed past that and a grace: what it
  counted by then is a lower bound, "at least", logged as ``metrics.disk_walk_bounded``; a walk
  that gave nothing (killed, its machine gone) gives no figure, and the sampler carries the
  last one (services/provisioner/usage_sampler.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from base.bounded_output import run_capped
from base.hostile_fs import DiskUse, disk_use, open_top
from providers.sandbox import enter_argv, process_groups

log = structlog.get_logger(__name__)

#: How long past its own bound a walker may take (its interpreter's start, in a machine whose
#: CPU share may be small) before it is killed.
GRACE_S = 10.0
#: What a walker says (one line of JSON) is this long at most.
_SAID_CAP = 4096
#: btrfs's ioctls (linux/btrfs.h): the file system's id, and the subvolume a file is in.
_FS_INFO = 0x8400941F
_INO_LOOKUP = 0xD0009412
_FS_INFO_SIZE, _INO_LOOKUP_SIZE = 1024, 4096
#: A subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
_SUBVOLUME_ROOT = 256
_SYSFS = Path("/sys/fs/btrfs")


@dataclass(frozen=True)
class WalkBound:
    """How much of a home one measurement may walk: entries and seconds."""

    entries: int = 100_000
    seconds: float = 5.0


async def home_disk(
    home: Path, bound: WalkBound, pid: int | None
) -> tuple[DiskUse | None, int | None]:
    """(what ``home`` takes on disk, the size of its file system): from the file system's own
    accounting where it keeps one, else walked within ``bound`` in the cgroups of ``pid`` (the
    machine's first process; None: it has none here, walked in none). None where it cannot be
    told (the home is gone, the walk was killed)."""
    try:
        fd = open_top(home)
    except OSError:
        return None, None
    try:
        size = file_system_size(fd)
        accounted = quota_bytes(fd)
    finally:
        os.close(fd)
    if accounted is not None:
        return DiskUse(accounted, 0, complete=True), size
    return await walk(home, bound, pid), size


async def walk(top: Path, bound: WalkBound, pid: int | None) -> DiskUse | None:
    """``top`` walked by a child in the cgroups of process ``pid`` (``process_groups``), within
    ``bound``; None if it gave no figure."""
    argv = [sys.executable, "-I", "-m", __name__, str(top), str(bound.entries), str(bound.seconds)]
    groups = process_groups(pid) if pid is not None else []
    got = await run_capped(enter_argv(groups, argv) if groups else argv, cap=_SAID_CAP,
                           timeout_s=bound.seconds + GRACE_S)  # fmt: skip
    try:
        said = json.loads(got.stdout)
        use = DiskUse(int(said["bytes"]), int(said["entries"]), bool(said["complete"]))
    except (ValueError, KeyError, TypeError):
        said_err = got.stderr[-300:].decode(errors="replace")
        log.warning("metrics.disk_walk_failed", top=str(top), code=got.returncode,
                    timed_out=got.timed_out, said=said_err)  # fmt: skip
        return None
    if not use.complete:  # the group it ran in, as it saw it: the machine's, or none (host's)
        log.warning("metrics.disk_walk_bounded", top=str(top), entries=use.entries,
                    at_least=use.bytes, charged_to=said.get("group"))  # fmt: skip
    return use


def quota_bytes(fd: int) -> int | None:
    """What the btrfs subvolume whose root ``fd`` is open on takes by its qgroup
    (``referenced``: its blocks, shared ones too, as a walk counts them); None where the file
    system keeps no such figure: not btrfs (its ioctls refused), not a subvolume's root, quotas
    off, or its figures not consistent yet (a rescan under way)."""
    try:
        if os.fstat(fd).st_ino != _SUBVOLUME_ROOT:
            return None
        info = bytearray(_FS_INFO_SIZE)
        fcntl.ioctl(fd, _FS_INFO, info)
        lookup = bytearray(_INO_LOOKUP_SIZE)
        struct.pack_into("=QQ", lookup, 0, 0, _SUBVOLUME_ROOT)
        fcntl.ioctl(fd, _INO_LOOKUP, lookup)
    except OSError:
        return None
    qgroups = _SYSFS / str(uuid.UUID(bytes=bytes(info[16:32]))) / "qgroups"
    tree = struct.unpack_from("=Q", lookup, 0)[0]
    with contextlib.suppress(OSError, ValueError):
        if int((qgroups / "inconsistent").read_text()) == 0:
            return int((qgroups / f"0_{tree}" / "referenced").read_text())
    return None


def file_system_size(fd: int) -> int | None:
    """The size of the file system that holds what ``fd`` is open on."""
    try:
        st = os.fstatvfs(fd)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def memory_group(pid: int | str = "self") -> str | None:
    """The cgroup that charges process ``pid``'s memory (v1's memory hierarchy, else v2's one
    group), as ``/proc/<pid>/cgroup`` names it."""
    with contextlib.suppress(OSError):
        lines = [line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().split()]
        groups = {c: path for _, c, path in lines}
        return groups.get("memory", groups.get(""))
    return None


def main(argv: list[str]) -> None:
    """The walker: ``TOP ENTRIES SECONDS``; says what it counted, and the memory group it ran
    in, as one line of JSON."""
    top, entries, seconds = Path(argv[0]), int(argv[1]), float(argv[2])
    use = disk_use(top, max_entries=entries, until=time.monotonic() + seconds)
    print(json.dumps({"bytes": use.bytes, "entries": use.entries, "complete": use.complete,
                      "group": memory_group()}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
