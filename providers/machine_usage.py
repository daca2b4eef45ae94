"""What a machine uses, read on its host (docs/monitoring.md): counters as of one instant,
which the provisioner's sampler turns into samples (services/provisioner/usage_sampler.py).

Where each figure comes from:
- a local machine (``namespaces``, and ``gvisor``, whose runsc processes run in it): its cgroup
  (providers/sandbox/cgroup.py): CPU time (``cpuacct.usage``, v1; ``cpu.stat``, v2), memory used
  less the page cache it could give back (``inactive_file``, as ``docker stats`` counts it) and its
  limit; on gvisor the memory its own kernel says its processes use (``runsc events --stats``),
  which leaves out what the sandbox itself takes;
- its network: the counters of its network namespace's interfaces (``/proc/<pid>/net/dev`` of a
  process in it), its loopback left out;
- a docker machine: the engine's stats of its container (``GET /containers/{id}/stats``);
- its home's disk: providers/disk_walk.py (the file system's own accounting, or a bounded walk
  charged to the machine), and the size of the file system that holds it.

Every file read here is the kernel's (cgroupfs, procfs) or the engine's answer, never a path a
machine controls.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from providers.sandbox import MachineCgroup

#: cgroup v1's "no limit" (a page-aligned LONG_MAX); anything at least this large is none.
_NO_LIMIT = 1 << 62


@dataclass(frozen=True)
class Usage:
    """A machine's counters at one instant (None: not known here). CPU time and network bytes
    count from some start; a sample is the difference of two readings."""

    cpu_ns: int | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    net_in_bytes: int | None = None
    net_out_bytes: int | None = None
    disk_bytes: int | None = None
    disk_limit_bytes: int | None = None

    def with_net(self, counters: tuple[int, int] | None) -> Usage:
        if counters is None:
            return self
        return replace(self, net_in_bytes=counters[0], net_out_bytes=counters[1])

    def with_disk(self, used: int | None, size: int | None) -> Usage:
        return replace(self, disk_bytes=used, disk_limit_bytes=size)


def cgroup_usage(dirs: list[Path], cpu_dir: Path, v2: bool) -> Usage | None:
    """CPU and memory from a machine's cgroup (``dirs``: its groups; ``cpu_dir``: the one
    that counts its CPU time); None if it has none (not running)."""
    if not any(d.is_dir() for d in dirs):
        return None
    if v2:
        group = dirs[0]
        cpu = _field(_read(group / "cpu.stat"), "usage_usec")
        current = _int(_read(group / "memory.current"))
        limit = _int(_read(group / "memory.max"))
        inactive = _field(_read(group / "memory.stat"), "inactive_file")
        cpu_ns = None if cpu is None else cpu * 1000
    else:
        memory = dirs[0]
        cpu_ns = _int(_read(cpu_dir / "cpuacct.usage"))
        current = _int(_read(memory / "memory.usage_in_bytes"))
        limit = _int(_read(memory / "memory.limit_in_bytes"))
        inactive = _field(_read(memory / "memory.stat"), "total_inactive_file")
    used = None if current is None else max(0, current - (inactive or 0))
    limited = limit is not None and limit < _NO_LIMIT
    return Usage(cpu_ns=cpu_ns, memory_bytes=used, memory_limit_bytes=limit if limited else None)


def net_counters(pid: int) -> tuple[int, int] | None:
    """(bytes received, bytes sent) by the interfaces of ``pid``'s network namespace, its
    loopback left out; None if it cannot be read (the process is gone)."""
    text = _read(Path(f"/proc/{pid}/net/dev"))
    if text is None:
        return None
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def runsc_memory(stats: str) -> int | None:
    """The memory a gVisor sandbox's processes use, from ``runsc events --stats``'s JSON
    (``data.memory.usage.usage``); None if it says none."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        value = json.loads(stats)["data"]["memory"]["usage"]["usage"]
        return int(value) if value else None
    return None


def docker_usage(stats: dict[str, Any]) -> Usage:
    """A container's counters from the engine's one-shot stats."""
    cpu = _get(stats, "cpu_stats", "cpu_usage", "total_usage")
    memory = stats.get("memory_stats") or {}
    usage, limit = memory.get("usage"), memory.get("limit")
    detail = memory.get("stats") or {}
    inactive = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    nets = (stats.get("networks") or {}).values()
    net = (sum(int(n.get("rx_bytes", 0)) for n in nets),
           sum(int(n.get("tx_bytes", 0)) for n in nets)) if nets else None  # fmt: skip
    return Usage(
        cpu_ns=int(cpu) if isinstance(cpu, int) else None,
        memory_bytes=max(0, int(usage) - int(inactive or 0)) if isinstance(usage, int) else None,
        memory_limit_bytes=int(limit) if isinstance(limit, int) and 0 < limit < _NO_LIMIT
        else None,
    ).with_net(net)  # fmt: skip


def _get(data: dict[str, Any], *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _int(text: str | None) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        return int(text.strip())  # type: ignore[union-attr]
    return None


def _field(text: str | None, name: str) -> int | None:
    """A ``name value`` line's value, in a cgroup's ``*.stat`` file."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return _int(value)
    return None


def local_usage(groups: list[MachineCgroup], netns_pid: int | None) -> Usage | None:
    """A local machine's CPU and memory from the first of ``groups`` (the names its cgroup
    may have: its own, its pool slot's) that exists, with its network namespace's counters
    (``netns_pid``: a process in it; None: it has none of its own); None if none exists."""
    for group in groups:
        got = cgroup_usage(group.dirs, group.cpu_accounting, group.v2)
        if got is not None:
            return got.with_net(None if netns_pid is None else net_counters(netns_pid))
    return None
