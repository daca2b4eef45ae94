"""One holder per lock file, created with O_EXCL, holding the holder's pid and /proc start time:
one daemon per machine home (``~/.fleet/daemon.lock``, ``DaemonLock``), one ``fleet up`` per
data dir (``<data-dir>/fleet-up.lock``, ``PidLock``).

O_EXCL makes creating the file the atomic "I hold it" step. A daemon killed with SIGKILL
cannot remove its file, so a file whose pid is gone (or reused by another process: the start
time differs) is taken over. Taking over is check-then-replace, so it runs under a short flock
on ``daemon.lock.guard``: two daemons racing for a stale lock cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from base import hostile_fs, procinfo
from base.wait import wait_until
from contracts.daemon.machine_files import LOCK_FILE

log = structlog.get_logger(__name__)


_DAEMON_HINT = "stop it first (fleet-daemon stop) or run `fleet-daemon status`"


class AlreadyRunning(Exception):
    def __init__(
        self, path: Path, pid: int | None, what: str = "fleet-daemon", hint: str = _DAEMON_HINT
    ) -> None:
        super().__init__(f"another {what} (pid {pid or '?'}) holds {path}; {hint}")
        self.pid = pid


def lock_path(home: Path) -> Path:
    return home / LOCK_FILE


#: A lock file holds two numbers: anything longer is not one.
_LOCK_CAP = 64


def read_lock(path: Path, top: Path | None = None) -> tuple[int | None, int | None]:
    """(pid, start ticks) written in a lock file; (None, None) if unreadable or not a regular
    file of a few bytes. ``top``: a directory above ``path`` that the caller trusts, below
    which no link is followed (a machine's home; by default the lock's own directory)."""
    top = top or path.parent
    try:
        fields = hostile_fs.read_file(top, str(path.relative_to(top)), _LOCK_CAP).split()
        return int(fields[0]), (int(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None, None


def holder_pid(home: Path) -> int | None:
    """The pid of the live daemon holding the lock of ``home``, if any. The home may be a
    machine's, read by root: no link in it is followed, no FIFO or device opened."""
    pid, ticks = read_lock(lock_path(home), home)
    return pid if pid is not None and procinfo.is_alive(pid, ticks) else None


class PidLock:
    """``what`` and ``hint`` name the holder in the refusal (``AlreadyRunning``)."""

    def __init__(self, path: Path, what: str, hint: str) -> None:
        self.path = path
        self._what, self._hint = what, hint
        self._held = False

    def acquire(self, *, handover_from: int | None = None, wait_s: float = 15.0) -> None:
        """Take the lock, or raise AlreadyRunning. ``handover_from``: the pid of a daemon that
        is handing over to us; wait (up to ``wait_s``) for it to let go instead of refusing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refused: list[AlreadyRunning] = []

        def taken() -> bool:
            try:
                self._try_acquire()
            except AlreadyRunning as exc:
                if exc.pid is None or exc.pid != handover_from:
                    raise
                refused[:] = [exc]
                return False
            return True

        if not wait_until(taken, within_s=wait_s, every_s=0.05):
            raise refused[-1]

    def _try_acquire(self) -> None:
        me = os.getpid()
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pid, ticks = read_lock(self.path)
                    if pid == me:  # we re-executed ourselves in place (daemon.selfUpdate)
                        break
                    if pid is not None and procinfo.is_alive(pid, ticks):
                        raise AlreadyRunning(self.path, pid, self._what, self._hint) from None
                    log.warning("lock.stale_taken_over", path=str(self.path), pid=pid)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                with os.fdopen(fd, "w") as f:
                    f.write(f"{me} {procinfo.start_ticks(me)}\n")
                break
            else:
                raise AlreadyRunning(self.path, None, self._what, self._hint)
        self._held = True

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(self.path.name + ".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def release(self) -> None:
        """Idempotent; removes the file only if it is still ours."""
        if not self._held:
            return
        self._held = False
        with self._guard():
            pid, _ = read_lock(self.path)
            if pid == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def keep_for_exec(self) -> None:
        """We are about to exec ourselves: the same pid keeps the lock across the exec."""
        self._held = False


class DaemonLock(PidLock):
    def __init__(self, home: Path) -> None:
        super().__init__(lock_path(home), "fleet-daemon", _DAEMON_HINT)
