"""One daemon per machine home: an exclusive flock on ~/.fleet/daemon.lock, holding the pid.

flock, not a bare O_EXCL file: the kernel releases it the moment its holder dies, so a crashed
daemon never leaves a stale lock behind, and two daemons started at once cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"another fleet-daemon (pid {pid or '?'}) holds {path}")
        self.pid = pid


def lock_path(home: Path) -> Path:
    return home / ".fleet" / "daemon.lock"


def holder_pid(home: Path) -> int | None:
    """The pid written in the lock file (check it is alive before trusting it)."""
    try:
        return int(lock_path(home).read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


class DaemonLock:
    def __init__(self, home: Path) -> None:
        self.path = lock_path(home)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.path, holder_pid(self.path.parent.parent)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Idempotent. The file stays (it only means something while locked)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
