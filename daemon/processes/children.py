"""Helpers for the daemon's long-lived children (background processes and cron jobs).

Shared by ``daemon.processes.slot``, ``daemon.processes.procs`` and ``daemon.processes.scheduler``:
where a child's output
goes, how its group is signalled without ever hitting a reused pid,
how its end is noticed when it is not our child, and how its log is read back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import structlog

from base import procinfo
from base.fd_readable import Readable
from base.retry import Backoff, retry_until

log = structlog.get_logger(__name__)

_TAIL_CHUNK = 64 * 1024
#: logs() answers over NATS: never read (or send) more than this from the end of a log.
_TAIL_MAX_BYTES = 4 * 1024 * 1024


def open_log(path: Path) -> int:
    """An append-only fd for a child's stdout and stderr (0600: output may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def signal_group(pid: int, start_ticks: int, sig: signal.Signals) -> None:
    """Signal the group ``pid`` leads, unless the pid now belongs to another process. A pid
    with no process may still name a live group (its members outlived it); the kernel does not
    hand out a pid that is still some group's id, so that group is still ours."""
    if pid <= 1:
        return  # killpg(0) would be the daemon's own group
    now = procinfo.start_ticks(pid)
    if now is not None and now != start_ticks:
        log.warning("process.pid_reused", pid=pid)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines, reading backwards from the end in chunks."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return []
    chunks: list[bytes] = []
    newlines = 0
    with f:
        pos = f.seek(0, os.SEEK_END)
        size = pos
        while pos > 0 and newlines <= n and size - pos < _TAIL_MAX_BYTES:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            chunks.append(f.read(step))
            newlines += chunks[-1].count(b"\n")
    lines = b"".join(reversed(chunks)).decode(errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if pos > 0:
        lines = lines[1:]  # cut mid-line by the chunking
    return lines[-n:]


async def wait_gone(pid: int, start_ticks: int | None, every_s: float) -> None:
    """Poll /proc until the process is gone: one that is not our child sends us no signal."""

    async def gone() -> bool:
        return not procinfo.is_alive(pid, start_ticks)

    await retry_until(gone, backoff=Backoff(every_s, every_s, jitter=False))


async def child_exit(proc: subprocess.Popen[bytes], poll_s: float) -> int:
    """Wait for our child's end and reap it; its exit code (negative for a signal). Through a
    pidfd where there is one, polling otherwise: never a thread, which the machine's pids
    limit may refuse. A ``Popen`` is what the daemon keeps for a child that must outlive it
    (a handover): asyncio's transport kills its child when collected."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfds here (kernel or seccomp), or the child is already reaped
        await wait_gone(proc.pid, None, poll_s)  # a zombie counts as gone
        return proc.wait()
    try:
        async with Readable(pidfd) as ended:  # a pidfd reads as readable once its process ends
            await ended.wait()
    finally:
        os.close(pidfd)
    return proc.wait()  # it has ended: this only reaps it


def let_go(proc: subprocess.Popen[bytes]) -> None:
    """Stop watching a child that runs on, for the next daemon to adopt, yet reap it should it
    end while this process lives (once this process is gone, the machine's init does)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(RuntimeError):  # no thread at the pids limit: left to init
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


def reap(pid: int) -> tuple[bool, int | None]:
    """Reap ``pid`` if it is our exited child: (reaped, exit code, negative for a signal)."""
    if pid <= 0:
        return False, None  # waitpid(0 or -n) would reap any child of a whole group
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False, None  # not our child (adopted across a handover): no exit code to get
    return (True, os.waitstatus_to_exitcode(status)) if got == pid else (False, None)
