"""How much memory this host has left for new work: what the warm pool's floor, the host's
memory floor and memory pressure (services/provisioner/memory_pressure.py) all read.

The kernel's own estimate (``MemAvailable`` of ``/proc/meminfo``), or, where the platform runs
in a memory cgroup with a limit of its own (``FLEET_MEMORY_CGROUP``: a systemd slice with
``MemoryMax``, a container, a test's small group), the lower of that estimate and the group's
room: its limit less what it uses, its inactive file cache not counted (the kernel reclaims that
before it calls the OOM killer, as ``MemAvailable`` does). Past its limit the kernel's OOM killer
picks within the group, whatever the host has left, so the group's room is what counts there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
_MIB = 1024 * 1024
#: A cgroup v1 group with no limit reads this (the largest page-aligned 63-bit value) or more.
_V1_UNLIMITED = 1 << 62


def mem_available_mb(meminfo: Path = MEMINFO) -> float | None:
    """The kernel's estimate of memory available for new work, in MiB (None if unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return None


def cgroup_room_mb(group: Path) -> float | None:
    """What a memory cgroup (its directory, v1 or v2) may still take before its limit, MiB,
    its inactive file cache counted as free; None if it has no limit or cannot be read."""
    v2 = (group / "memory.max").exists()
    names = ("memory.max", "memory.current") if v2 else (
        "memory.limit_in_bytes", "memory.usage_in_bytes")  # fmt: skip
    try:
        raw_limit, raw_usage = ((group / n).read_text().strip() for n in names)
        stat = _stat(group / "memory.stat")
    except OSError:
        return None
    if raw_limit == "max" or int(raw_limit) >= _V1_UNLIMITED:
        return None
    # v1 counts the group's subtree under total_*; v2's memory.stat always does.
    inactive = stat.get("inactive_file" if v2 else "total_inactive_file", 0)
    return (int(raw_limit) - int(raw_usage) + inactive) / _MIB


def _stat(path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            found[key] = int(value)
    return found


def available_mb(cgroup: Path | None = None, meminfo: Path = MEMINFO) -> float | None:
    """This host's memory available for new work, MiB: ``MemAvailable``, or the group's room
    where that is lower (``cgroup``: ``FLEET_MEMORY_CGROUP``); None if neither can be read."""
    room = cgroup_room_mb(cgroup) if cgroup is not None else None
    known = [v for v in (mem_available_mb(meminfo), room) if v is not None]
    return min(known) if known else None


def host_memory(cgroup: str) -> Callable[[], float | None]:
    """The reading of ``FLEET_MEMORY_CGROUP`` (empty: ``/proc/meminfo`` alone)."""
    return partial(available_mb, Path(cgroup) if cgroup else None)
