"""What a process costs, read from /proc: memory (RSS, peak, USS/PSS), CPU time, children."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _kb_field(pid: int, key: str) -> float | None:
    value = proc_status(pid).get(key)
    return int(value.split()[0]) / 1024 if value else None


def syscalls(pid: int) -> tuple[int, int]:
    """(read, write) system calls the process made so far (/proc/<pid>/io: syscr, syscw)."""
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = int(value)
    return fields.get("syscr", 0), fields.get("syscw", 0)


def rss_mb(pid: int) -> float | None:
    return _kb_field(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float | None:
    """The high-water mark of the process's resident set (VmHWM)."""
    return _kb_field(pid, "VmHWM")


def uss_pss_mb(pid: int) -> tuple[float | None, float | None]:
    """(USS, PSS): memory only this process uses, and its fair share of shared pages."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None, None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            fields[key] = int(value.split()[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return uss / 1024, fields.get("Pss", 0) / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
