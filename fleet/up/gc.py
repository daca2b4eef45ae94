"""`fleet gc`: what stacks that no longer run left on this host, found by the stack's identity
(its data dir) and removed.

A stack is its data dir. It is *gone* when that dir no longer exists, or when its `fleet up`
lock (``LOCK_NAME``) is there and its holder is dead (a `fleet up` killed outright). A dir
without a lock file is left alone: a stopped `fleet up` removed its lock after stopping
everything, and a provisioner run by itself (a test's) holds none, so its owner cannot be
told apart from a live one. A running `fleet up`'s stack is never touched.

What names a stack:
- a process of fleetd's (``HELPERS`` by the program's name, fleetd's Python modules), by
  ``STACK_VAR`` in its environment (the services, pasta), else by a path of the
  data dir's layout in its command line or working directory (bwrap's binds, runsc's
  ``--root``, a machine's home);
- a mount point of the data dir's layout;
- a docker container or volume, by its ``LABEL_STACK``.

A gone stack whose dir still exists keeps its containers and volumes (its next `fleet up`
resumes its docker machines, their homes in those volumes); one whose dir is removed loses
them. tests/leftovers.py finds a test session's leftovers with the same readings
(``naming``, ``mounts_under``, ``labelled``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from base import lifeline, procinfo
from base.lockfile import read_lock
from contracts.errors import ProviderError
from providers.docker import LABEL_STACK
from providers.sandbox import NETNS_OF, STACK_VAR
from providers.scratch import mounts_under, unmount_under

#: In the data dir, held by the running `fleet up` (its pid and start time).
LOCK_NAME = "fleet-up.lock"
#: Programs a stack runs beside its Python processes, by the name they run as.
HELPERS = frozenset({"pasta", "pasta.avx2", "passt", "bwrap", "runsc", "runsc-gofer",
                     "runsc-sandbox", "nats-server", "valkey-server", "redis-server"})  # fmt: skip
#: fleetd's Python processes, by the module they run (``python -m <module>``).
_MODULES = re.compile(r"^(services\.|daemon(\.|$))")
#: A path of a data dir's layout: the data dir (a host's under ``hosts/<id>`` is the stack's),
#: then one of the names fleetd makes in it.
_LAYOUT = re.compile(
    rb"(/[^\0\s=,:]*?)(?:/hosts/[^/\0\s]+)?/(?:machines|pool|gvisor|runsc|nats|redis|sandbox|homes)"
    rb"(?=[/\0\s]|$)"
)
_DOCKER_TIMEOUT_S = 60.0
_DOCKER_LIST = {"container": ["docker", "ps", "--all", "--no-trunc"],
                "volume": ["docker", "volume", "ls"]}  # fmt: skip
#: How long a process is given to end after SIGTERM before SIGKILL.
GRACE_S = 5.0


@dataclass(frozen=True)
class Process:
    pid: int
    ticks: int | None
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"process {self.pid}: {' '.join(self.argv)[:300]}"


@dataclass
class Leftovers:
    """What gone stacks left: ended and removed by ``remove``."""

    processes: list[Process] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([str(p) for p in self.processes] + [f"mount {m}" for m in self.mounts]
                + [f"container {c}" for c in self.containers]
                + [f"volume {v}" for v in self.volumes])  # fmt: skip


def facts(pid: int) -> tuple[bytes, bytes, bytes]:
    """Its command line, environment and working directory (empty: what it does not let us
    read)."""
    read = []
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                read.append(f.read())
        except OSError:
            read.append(b"")
    cwd = b""
    with contextlib.suppress(OSError):
        cwd = os.fsencode(os.readlink(f"/proc/{pid}/cwd"))
    return read[0], read[1], cwd


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        if (up := procinfo.parent(pid)) is None:
            break
        pid = up
    return chain


def _live() -> Iterator[int]:
    """Every live process but this one and its ancestors (never ended by what they look for)."""
    mine = set(ancestors(os.getpid()))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) not in mine:
            pid = int(entry.name)
            if procinfo.state(pid) not in (None, "Z", "X"):
                yield pid


def _process(pid: int) -> Process:
    return Process(pid, procinfo.start_ticks(pid), tuple(procinfo.cmdline(pid)))


def naming(root: Path) -> list[Process]:
    """Processes whose command line, environment or working directory names ``root`` (the
    dir itself: not ``pytest-12`` within ``pytest-123``)."""
    mark = re.compile(re.escape(str(root.resolve()).encode()) + rb"(?![\w.-])")
    return [_process(pid) for pid in _live() if any(mark.search(f) for f in facts(pid))]


def is_fleetd(argv: list[str] | tuple[str, ...]) -> bool:
    """A helper or Python process of fleetd's, by what it runs (never a user's shell that
    happens to sit in a data dir)."""
    if not argv:
        return False
    if os.path.basename(argv[0]) in HELPERS:
        return True
    return any(a == "-m" and _MODULES.match(b) for a, b in itertools.pairwise(argv))


def stack_of(cmdline: bytes, environ: bytes = b"", cwd: bytes = b"") -> Path | None:
    """The data dir a process names (``facts``): ``STACK_VAR`` in its environment, else the
    first path of a data dir's layout in its command line or working directory."""
    want = STACK_VAR.encode() + b"="
    for var in environ.split(b"\0"):
        if var.startswith(want + b"/"):
            return top(Path(os.fsdecode(var[len(want) :])))
    for fact in (cmdline, cwd):
        if found := _LAYOUT.search(fact):
            return Path(os.fsdecode(found[1]))
    return None


def pastas_of(stack: Path) -> list[Process]:
    """The pastas carrying ``stack``'s mark (``STACK_VAR``): once the stack's machines are
    stopped, none should run (a machine from the warm pool has its slot's)."""
    want = NETNS_OF.encode() + b"="
    found = []
    for pid in _live():
        environ = facts(pid)[1]
        marked = any(v.startswith(want) for v in environ.split(b"\0"))
        if marked and stack_of(b"", environ) == stack:
            found.append(_process(pid))
    return found


def top(data_dir: Path) -> Path:
    """The stack's data dir of ``data_dir`` (a host's, ``<stack>/hosts/<id>``, is its)."""
    return data_dir.parent.parent if data_dir.parent.name == "hosts" else data_dir


def gone(stack: Path) -> bool:
    """No `fleet up` runs on ``stack``, and one did (module docstring)."""
    if not stack.exists():
        return True
    pid, ticks = read_lock(stack / LOCK_NAME)
    return pid is not None and not procinfo.is_alive(pid, ticks)


def find(only: Path | None = None) -> Leftovers:
    """What gone stacks left (``only``: that stack's alone)."""
    found = Leftovers()
    verdict: dict[Path, bool] = {}

    def left_by(stack: Path | None) -> bool:
        if stack is None or (only is not None and stack != only):
            return False
        if stack not in verdict:
            verdict[stack] = gone(stack)
        return verdict[stack]

    for pid in _live():
        argv = procinfo.cmdline(pid)
        if is_fleetd(argv) and left_by(stack_of(*facts(pid))):
            found.processes.append(_process(pid))
    for point in mounts_under(Path("/")):
        if left_by(stack_of(os.fsencode(point) + b"/")):
            found.mounts.append(point)
    for kind, names in (("container", found.containers), ("volume", found.volumes)):
        for name, stack, _ in labelled(kind):
            if not stack.exists() and left_by(stack):
                names.append(name)
    return found


def labelled(kind: str) -> list[tuple[str, Path, str]]:
    """(name, stack, state) of each docker ``kind`` (container, running or not; volume: no
    state) labelled with a stack; none where no engine answers (then none can have been made)."""
    if shutil.which("docker") is None:
        return []
    try:
        out = subprocess.run(
            [*_DOCKER_LIST[kind], "--filter", f"label={LABEL_STACK}", "--format", "{{json .}}"],
            capture_output=True, text=True, timeout=_DOCKER_TIMEOUT_S, check=True,
        ).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return []
    found = []
    for line in out.splitlines():
        row = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
        if stack := labels.get(LABEL_STACK, ""):
            name = str(row.get("Names") or row.get("Name"))
            found.append((name, Path(stack), str(row.get("State", ""))))
    return found


def remove(found: Leftovers, grace_s: float = GRACE_S) -> list[str]:
    """End and remove ``found``; a line for each thing that could not be."""
    failed = []
    left = lifeline.end([(p.pid, p.ticks) for p in found.processes], grace_s)
    failed += [f"{p}: still running" for p in found.processes if p.pid in left]
    for point in sorted(found.mounts, key=lambda m: len(m.parts), reverse=True):
        try:
            unmount_under(point)
        except (OSError, ProviderError) as exc:  # still mounted: said, the rest goes on
            failed.append(f"mount {point}: {exc}")
    for kind, names in (("container", found.containers), ("volume", found.volumes)):
        argv = ["docker", "rm", "--force"] if kind == "container" else ["docker", "volume", "rm"]
        for name in names:
            done = subprocess.run([*argv, name], capture_output=True, text=True,
                                  timeout=_DOCKER_TIMEOUT_S, check=False)  # fmt: skip
            if done.returncode != 0:
                failed.append(f"{kind} {name}: {done.stderr.strip()[:200]}")
    return failed


def main(dry_run: bool = False, only: Path | None = None) -> int:
    """`fleet gc`: prints each thing found (and removed, unless ``dry_run``), of ``only``'s
    stack or every gone one's; 1 if one stays."""
    found = find(None if only is None else Path(os.path.abspath(only)))
    if not found.lines():
        print("fleet gc: nothing left by a stack that is gone", flush=True)
    for line in found.lines():
        print(f"{'would remove' if dry_run else 'removing'} {line}", flush=True)
    failed = [] if dry_run else remove(found)
    for line in failed:
        print(f"fleet gc: could not remove {line}", file=sys.stderr, flush=True)
    return 1 if failed else 0
