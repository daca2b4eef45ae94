"""Resource limits of a local machine: a cgroup of its own.

The provider creates ``fleet/<machineId>`` in the memory, cpu and pids hierarchies (cgroup v1,
``/sys/fs/cgroup/<controller>``) or in the unified hierarchy (cgroup v2, when
``/sys/fs/cgroup/cgroup.controllers`` offers the three), writes the limits, and starts the
machine's root process inside it (``enter_argv``: a shell that moves itself in, then execs
bwrap), so that every process of the machine is in it from its first instruction. At stop,
whatever is left in it is killed and the groups are removed.

Needs root (or a delegated hierarchy); ``unavailable()`` says why not in one line, and
``fleet up`` says so loudly: local machines then run without limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from base.wait import wait_until
from contracts.errors import ProviderError
from controlplane.policy import Limits

ROOT = Path("/sys/fs/cgroup")
PARENT = "fleet"
V1_CONTROLLERS = ("memory", "cpu", "pids")
#: Where cgroup v1 counts a group's CPU time, when the host mounts it apart from ``cpu`` (a
#: machine's metrics read it: providers/machine_usage.py); joined as well, limiting nothing.
V1_ACCOUNTING = "cpuacct"
_PERIOD_US = 100_000


def _v2(root: Path) -> bool:
    try:
        offered = (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False
    return set(V1_CONTROLLERS) <= set(offered)


def _apart(root: Path, controller: str, other: str) -> bool:
    """``controller``'s v1 hierarchy is mounted, and not as one with ``other``'s."""
    a, b = root / controller, root / other
    return a.is_dir() and a.resolve() != b.resolve()


def unavailable(root: Path = ROOT) -> str | None:
    """None if machines' cgroups can be made here, else why not (one line)."""
    parents = [root / PARENT] if _v2(root) else [root / c / PARENT for c in V1_CONTROLLERS]
    if not _v2(root) and not all((root / c).is_dir() for c in V1_CONTROLLERS):
        return f"no cgroup v2 with memory, cpu and pids, nor their v1 hierarchies in {root}"
    try:
        for parent in parents:
            parent.mkdir(exist_ok=True)
            if _v2(root):
                (root / "cgroup.subtree_control").write_text("+memory +cpu +pids")
                (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
    except OSError as exc:
        return f"cannot create cgroups in {root} ({exc.strerror}): run fleet up as root"
    return None


class NotFrozen(ProviderError):
    """A running machine whose processes cannot be frozen (none of its cgroups exists): what
    root would copy of its files could change under the copy, so it is not copied."""


class MachineCgroup:
    """The cgroup(s) of one machine."""

    def __init__(self, machine_id: str, root: Path = ROOT) -> None:
        self.machine_id = machine_id
        self.v2 = _v2(root)
        self._root = root
        if self.v2:
            self.dirs = [root / PARENT / machine_id]
        else:
            self.dirs = [root / c / PARENT / machine_id for c in V1_CONTROLLERS]
            if _apart(root, V1_ACCOUNTING, "cpu"):
                self.dirs.append(root / V1_ACCOUNTING / PARENT / machine_id)

    @property
    def cpu_accounting(self) -> Path:
        """The group that counts the machine's CPU time (``cpuacct.usage``, v1; ``cpu.stat``,
        v2)."""
        if self.v2:
            return self.dirs[0]
        apart = len(self.dirs) > len(V1_CONTROLLERS)
        return self.dirs[len(V1_CONTROLLERS)] if apart else self.dirs[V1_CONTROLLERS.index("cpu")]

    def create(self, limits: Limits) -> None:
        """Make the groups and write ``limits`` (OSError if the host does not let us)."""
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        memory = str(limits.memory_mb * 1024 * 1024)
        quota = max(1000, int(limits.cpus * _PERIOD_US))
        if self.v2:
            d = self.dirs[0]
            _write(d / "memory.max", memory)
            _write(d / "memory.swap.max", "0", optional=True)
            _write(d / "cpu.max", f"{quota} {_PERIOD_US}")
            _write(d / "pids.max", str(limits.pids))
            return
        mem, cpu, pids = self.dirs[: len(V1_CONTROLLERS)]
        _write(mem / "memory.limit_in_bytes", memory)
        _write(mem / "memory.memsw.limit_in_bytes", memory, optional=True)  # no swap either
        _write(cpu / "cpu.cfs_period_us", str(_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(quota))
        _write(pids / "pids.max", str(limits.pids))

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` started inside the groups (``enter_argv``)."""
        return enter_argv(self.procs_files(), argv)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in Path(f).read_text().split()}
        return found

    def remove(self, wait_s: float = 3.0) -> bool:
        """Kill what is left in the groups and remove them; False if one stays."""

        def gone() -> bool:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            for d in self.dirs:
                with contextlib.suppress(FileNotFoundError, OSError):
                    d.rmdir()
            return not any(d.exists() for d in self.dirs)

        return wait_until(gone, within_s=wait_s, every_s=0.05)

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs)

    def freeze(self) -> None:
        """Freeze every process of the machine (cgroup v2: its group's ``cgroup.freeze``; v1:
        its processes moved into a freezer group of its own), until ``thaw``."""
        if self.v2:
            _write(self.dirs[0] / "cgroup.freeze", "1")
            _until(lambda: "frozen 1" in (self.dirs[0] / "cgroup.events").read_text())
            return
        group = self._freezer()
        group.mkdir(parents=True, exist_ok=True)
        moved: set[int] = set()
        while left := self.pids() - moved:  # a child forked meanwhile: moved in the next round
            for pid in left:
                with contextlib.suppress(ProcessLookupError, OSError):
                    _write(group / "cgroup.procs", str(pid))
            moved |= left
        _write(group / "freezer.state", "FROZEN")
        _until(lambda: (group / "freezer.state").read_text().strip() == "FROZEN")

    def thaw(self) -> None:
        if self.v2:
            _write(self.dirs[0] / "cgroup.freeze", "0")
            return
        group = self._freezer()
        _write(group / "freezer.state", "THAWED")
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, OSError):
                _write(group.parent.parent / "cgroup.procs", pid)
        with contextlib.suppress(OSError):
            group.rmdir()

    def _freezer(self) -> Path:
        return self._root / "freezer" / PARENT / self.machine_id


#: Where cgroup v1 charges a process's work to its group: memory, CPU time, processes and block
#: I/O. Never the freezer: what joins a frozen machine's group would stop with it.
CHARGED_V1 = ("memory", "cpu", "cpuacct", "pids", "blkio")
#: A shell's exit status when it cannot join a group (``enter_argv``).
NOT_ENTERED = 125


def enter_argv(procs_files: list[str], argv: list[str]) -> list[str]:
    """``argv`` started inside the groups of ``procs_files`` (their ``cgroup.procs``): a shell
    writes its own pid to each (exiting ``NOT_ENTERED`` if it cannot), then becomes ``argv``,
    so that everything ``argv`` does is charged there from its first instruction."""
    script = (
        f'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit {NOT_ENTERED}; shift; '
        'n=$((n-1)); done; exec "$@"'
    )
    return ["/bin/sh", "-c", script, "fleet-cgroup", str(len(procs_files)), *procs_files, *argv]


def process_groups(pid: int, root: Path = ROOT) -> list[str]:
    """The ``cgroup.procs`` files of the groups process ``pid`` is charged in (cgroup v2: its
    one group; v1: its groups of ``CHARGED_V1`` that are mounted), one per hierarchy; [] if
    it is gone. A machine's root process's are the machine's: a container's too."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    v2 = _v2(root)
    found: dict[Path, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if v2 != (controllers == ""):
            continue
        for name in [""] if v2 else set(controllers.split(",")) & set(CHARGED_V1):
            procs = root / name / path.lstrip("/") / "cgroup.procs"
            with contextlib.suppress(OSError):  # one hierarchy, mounted under several names
                found.setdefault(procs.parent.resolve(), str(procs))
    return [procs for procs in found.values() if os.path.exists(procs)]


@contextlib.contextmanager
def frozen(groups: list[MachineCgroup], *, running: bool = True) -> Iterator[None]:
    """The machine's processes frozen for the block: ``groups`` are the names its cgroup may
    have (its own, or the pool slot's it came from), of which those that exist are frozen.
    A ``running`` machine with none of them is refused (``NotFrozen``): its processes would
    go on, unseen, while the block runs. A machine that is not running has nothing to freeze."""
    done: list[MachineCgroup] = []
    if running and not any(group.exists() for group in groups):
        names = ", ".join(group.machine_id for group in groups) or "none"
        raise NotFrozen(f"the machine runs, but none of its cgroups ({names}) exists to freeze it")
    try:
        for group in groups:
            if group.exists():
                done.append(group)
                group.freeze()
        yield
    finally:
        for group in done:
            with contextlib.suppress(OSError):
                group.thaw()


def _until(ready: Callable[[], bool], timeout_s: float = 5.0) -> None:
    if not wait_until(ready, within_s=timeout_s, every_s=0.001):
        raise OSError("the machine's processes did not freeze within 5 s")


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not optional:
            raise
