"""Facts about processes from /proc: is this pid still the process we started?"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Collection, Iterable, Iterator

_PR_SET_CHILD_SUBREAPER = 36


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or
    None when there is no such process. A pid reused by another process has another value."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[19])


def age_s(pid: int) -> float | None:
    """Seconds since the process started, or None when there is no such process."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return max(0.0, up - ticks / os.sysconf("SC_CLK_TCK"))


def is_alive(pid: int, ticks: int | None) -> bool:
    """The pid is running (not a zombie) and, when ``ticks`` is given, is the same process."""
    if state(pid) in (None, "Z", "X"):
        return False
    return ticks is None or start_ticks(pid) == ticks


def state(pid: int) -> str | None:
    """The one-letter state (R, S, D, T, Z, ...) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].split()[0].decode()


def parent(pid: int) -> int | None:
    """The parent's pid (/proc/<pid>/stat field 4), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2 :].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def fd_links(pid: int) -> dict[int, str]:
    """What each open descriptor of ``pid`` names (``socket:[inode]``, a path, ...), but
    those it closes while they are read: a listing of a live process is never one moment.
    Raises OSError when the process cannot be read (gone, another user's)."""
    links = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            links[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return links


def env_roots(name: str, value: str) -> list[int]:
    """Pids of the topmost processes whose environment has ``name=value`` (a process whose
    parent has it too is left out): the roots of the trees started with it. Processes whose
    environment cannot be read (other users) are not seen."""
    want = f"{name}={value}".encode()
    marked: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if want not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        marked[int(entry.name)] = ppid
    return sorted(pid for pid, ppid in marked.items() if ppid not in marked)


def pid_namespace(pid: int) -> int | None:
    """The pid namespace ``pid`` lives in (its inode), or None when that cannot be read. The
    number names that namespace only while it exists: the kernel gives a freed namespace's
    number to the next one made (``held_pid_namespaces``)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


@contextlib.contextmanager
def held_pid_namespaces(children: Iterable[tuple[int, int]]) -> Iterator[set[int]]:
    """The pid namespaces of each ``(parent, child)``'s child (their inodes, this process's
    own left out), each held open until the block ends. Held, a namespace keeps its number
    after its last process ended; freed, its number goes to the next namespace made (a
    container's, another sandbox's), whose processes a kill "of that namespace" would hit. A
    child whose parent is no longer ``parent`` once its namespace is open (ended, its pid
    reused) is left out."""
    own = pid_namespace(os.getpid())
    held: dict[int, int] = {}
    try:
        for ppid, child in children:
            try:
                fd = os.open(f"/proc/{child}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            inode = os.fstat(fd).st_ino
            if parent(child) != ppid or inode == own or inode in held:
                os.close(fd)
                continue
            held[inode] = fd
        yield set(held)
    finally:
        for fd in held.values():
            os.close(fd)


def members(markers: list[tuple[str, str]], namespaces: Collection[int] = ()) -> list[int]:
    """Live (not zombie) pids whose environment has one of ``markers`` (name, value), or that
    live in one of the pid ``namespaces``: every process of one machine, wherever it was
    started and whatever its environment."""
    wants = [f"{name}={value}".encode() for name, value in markers]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if namespaces and pid_namespace(pid) in namespaces:
            found.append(pid)
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if any(w in environ for w in wants):
            found.append(pid)
    return sorted(p for p in found if state(p) not in (None, "Z", "X"))


def become_subreaper() -> bool:
    """Makes this process the subreaper of its descendants (Linux's ``PR_SET_CHILD_SUBREAPER``):
    an orphan among them is handed to it, not to PID 1. Whether it now is."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        )
    return False
