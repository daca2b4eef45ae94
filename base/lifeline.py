"""Children that end with the process that started them, however it ends (SIGKILL included),
and a record of them, so that what a dead parent left can still be found and ended.

A child is started through a tiny exec wrapper: ``prctl(PR_SET_PDEATHSIG)`` then ``execvp``
of the real program (a signal set so survives the exec). The kernel sends the signal when the
*thread* that forked the child ends: only the main thread of a process may start children
this way (``fleet up`` supervises from its main thread). A parent that died before the prctl
took effect is seen by the wrapper (its parent pid changed), which then exits at once.

The record (``pid start-ticks label`` lines) is a backstop: a child that ignored its signal,
or one started by a parent from before this mechanism, is still found and ended by the next
holder of the same record (``end_recorded``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from base import procinfo
from base.wait import wait_until

#: Run by ``python -I -S -c``: argv is (-c, parent pid, signal, held, program, args...).
_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "sig, held = int(sys.argv[2]), sys.argv[3] == 'held'\n"
    "if held:\n"
    "    signal.pthread_sigmask(signal.SIG_BLOCK, {sig})\n"
    "if ctypes.CDLL(None, use_errno=True).prctl(1, sig, 0, 0, 0) != 0:\n"
    "    sys.exit('lifeline: prctl(PR_SET_PDEATHSIG) failed')\n"
    "if os.getppid() != int(sys.argv[1]) and not held:\n"
    "    sys.exit('lifeline: the parent ended before the child started')\n"
    "os.execvp(sys.argv[4], sys.argv[4:])\n"
)


def die_with_parent(argv: list[str], sig: int = signal.SIGTERM, *, held: bool = False) -> list[str]:
    """``argv`` run so that it gets ``sig`` when this process (its main thread) ends.

    ``held``: for a program whose job is that signal (fleet/up/keeper.py): ``sig`` is blocked
    before the prctl, and stays blocked across the exec, so that one sent while the program
    starts waits for it (``sigwait``) instead of ending it; a parent already gone does not stop
    it either (it checks its parent itself)."""
    mode = "held" if held else "-"
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), str(int(sig)), mode,
            *argv]  # fmt: skip


class Children:
    """Starts children bound to this process, and records each one in ``record``."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def popen(
        self,
        argv: list[str],
        log: IO[bytes],
        label: str,
        env: dict[str, str] | None = None,
        sig: int = signal.SIGTERM,
        *,
        held: bool = False,
    ) -> subprocess.Popen[bytes]:
        """``argv`` started, its output to ``log``; ``sig`` when this process ends (``held``:
        as ``die_with_parent``'s)."""
        proc = subprocess.Popen(
            die_with_parent(argv, sig, held=held),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops them in order
        )
        with open(self.record, "a") as f:
            f.write(f"{proc.pid} {procinfo.start_ticks(proc.pid)} {label}\n")
        return proc

    def forget(self) -> None:
        """Once every child has ended: nothing is left for the next holder to end."""
        if not recorded(self.record):
            self.record.unlink(missing_ok=True)


def recorded(record: Path) -> list[tuple[int, int | None, str]]:
    """(pid, start ticks, label) of each child in ``record`` still running as that process."""
    try:
        lines = record.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        pid, ticks, label = [*line.split(" ", 2), "", ""][:3]
        if not pid.isdigit():
            continue
        start = int(ticks) if ticks.isdigit() else None
        if procinfo.is_alive(int(pid), start):
            found.append((int(pid), start, label))
    return found


def end_recorded(record: Path, grace_s: float = 5.0) -> list[str]:
    """End (SIGTERM, then SIGKILL after ``grace_s``) each child ``record`` names that still
    runs; the record is removed. Returns "label (pid N)" of each one ended."""
    left = recorded(record)
    end([(pid, ticks) for pid, ticks, _ in left], grace_s, killed_s=0)
    record.unlink(missing_ok=True)
    return [f"{label} (pid {pid})" for pid, _, label in left]


def end(
    processes: list[tuple[int, int | None]], grace_s: float = 5.0, killed_s: float = 5.0
) -> list[int]:
    """End each (pid, start ticks) that is still that process: SIGTERM, then SIGKILL to those
    still running after ``grace_s`` (a pid reused meanwhile is another process: not signalled).
    Returns the pids still running ``killed_s`` after the SIGKILL (a process in the kernel's
    uninterruptible sleep, say)."""
    for pid, ticks in processes:
        if procinfo.is_alive(pid, ticks):
            _signal(pid, signal.SIGTERM)
    _until_ended(processes, grace_s)
    for pid, ticks in processes:
        if procinfo.is_alive(pid, ticks):
            _signal(pid, signal.SIGKILL)
    _until_ended(processes, killed_s)
    return [pid for pid, ticks in processes if procinfo.is_alive(pid, ticks)]


def _until_ended(processes: list[tuple[int, int | None]], timeout_s: float) -> None:
    wait_until(lambda: not any(procinfo.is_alive(p, t) for p, t in processes),
               within_s=timeout_s, every_s=0.05)  # fmt: skip


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
