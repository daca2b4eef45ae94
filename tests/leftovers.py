"""What a test session left behind: processes, mounts and docker containers and volumes of this
session, found by its base temp dir (``.../pytest-of-<user>/pytest-<n>``, xdist workers' under
it), which names every data dir, machine home and server store its tests made, with `fleet gc`'s
readings (fleet/up/gc.py). Other checkouts' sessions running on this host have base temp dirs of
their own: theirs are never counted.

A helper of fleetd's that names no dir (a pasta of a provider run inside a test process, whose
environment carries no data dir) is still this session's when its parent is the session's
reaper (tests/reaper.py, the parent of the session's process): it was orphaned inside the
session, and an orphan of another session goes to that session's reaper, or to PID 1.

Machines outlive the provisioner that started them by design, so a fixture that makes them
must end them; ``tests/conftest.py`` fails the session, naming them and the tests that ran
when each process started (``Windows``), when one did not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from base import procinfo
from fleet.up import gc
from providers.scratch import mounts_under

#: Teardowns signal; their processes may still be ending as the session finishes.
SETTLE_S = 10.0
#: The resolution of a process's start time (clock ticks), and then some.
_SLACK_S = 0.5


class Windows:
    """When each test ran (its setup to its teardown, wall clock, from its reports): which
    tests were running when a leftover process started. Cheap: two floats per test."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}

    def add(self, report: pytest.TestReport) -> None:
        start, stop = self.spans.get(report.nodeid, (report.start, report.stop))
        self.spans[report.nodeid] = (min(start, report.start), max(stop, report.stop))

    def running_at(self, when: float) -> list[str]:
        return sorted(
            node
            for node, (start, stop) in self.spans.items()
            if start - _SLACK_S <= when <= stop + _SLACK_S
        )


def find(basetemp: Path, settle_s: float = SETTLE_S, windows: Windows | None = None) -> list[str]:
    """Each leftover of the session whose base temp dir is ``basetemp``, one line each; what
    is still ending is given ``settle_s`` to end."""
    deadline = time.monotonic() + settle_s
    while True:
        found = [_said(p, windows) for p in _processes(basetemp)]
        found += mounts(basetemp) + containers(basetemp)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def processes(basetemp: Path) -> list[str]:
    """Processes whose command line, environment or working directory names ``basetemp``
    (not this process or its ancestors), and fleetd's helpers orphaned to this session's
    reaper."""
    return [str(p) for p in _processes(basetemp)]


def _processes(basetemp: Path) -> list[gc.Process]:
    found = gc.naming(basetemp)
    named = {p.pid for p in found}
    # The session's own reaper only: the parent of the session's process (a session run
    # inside another one's test sees that one's reaper further up, with its live machines).
    reaper = procinfo.parent(os.getpid())
    if reaper is not None and "tests.reaper" in procinfo.cmdline(reaper):
        for pid in _children(reaper):
            argv = procinfo.cmdline(pid)
            if pid not in named and gc.is_fleetd(argv) and procinfo.is_alive(pid, None):
                found.append(gc.Process(pid, procinfo.start_ticks(pid), tuple(argv)))
    return found


def _children(pid: int) -> list[int]:
    """``pid``'s children (its threads' ``children`` lists)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _said(process: gc.Process, windows: Windows | None) -> str:
    if windows is None or process.ticks is None:
        return str(process)
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - process.ticks / os.sysconf("SC_CLK_TCK")
    started = time.time() - age  # /proc/stat's btime is whole seconds: not precise enough
    tests = windows.running_at(started)
    during = ", ".join(tests[:5]) + (f" and {len(tests) - 5} more" if len(tests) > 5 else "")
    return f"{process} (started during {during or 'no test: the session itself'})"


def mounts(basetemp: Path) -> list[str]:
    """Mount points (of this mount namespace) under ``basetemp``."""
    return [f"mount {point}" for point in mounts_under(basetemp)]


def containers(basetemp: Path) -> list[str]:
    """Docker containers (running or not) and volumes labelled with a stack under
    ``basetemp``; none where no engine answers (then none can have been made)."""
    root = basetemp.resolve()
    return [
        f"{kind} {name}{f' ({state})' if state else ''}: stack {stack}"
        for kind in ("container", "volume")
        for name, stack, state in gc.labelled(kind)
        if stack.is_relative_to(root)
    ]
