"""A variables file of the machine's (``~/.fleet/.env``, ``~/.fleet/container.env``) as the
daemon reads it: re-read only when it changed, never through a link, never more than a cap.

The format itself (and its parser) is ``base.dotenv``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from base.dotenv import parse_env_file

log = structlog.get_logger(__name__)

#: (inode, size, mtime_ns): a rename-into-place always changes the inode, an edit in place
#: changes size or mtime.
Signature = tuple[int, int, int] | None
#: No process can be given more: Linux refuses an execve whose arguments and environment pass
#: a quarter of the stack limit, 2 MiB under the usual 8 MiB.
ENV_FILE_MAX = 2 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Unreadable(ValueError):
    """The file is there but is not one to read: not a regular file, or over the cap."""


def signature(path: Path) -> Signature:
    """The file's signature, of the name itself (a link is not followed); None: no file."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_bounded(path: Path, max_bytes: int, root: Path | None = None) -> bytes | None:
    """The file's bytes, None when there is none. The machine owns the directories below
    ``root`` (the home; default: the file's own directory) and may put anything there, so each
    of them and the file are opened without following a link, the file without blocking (a
    FIFO), and it is read only if it is a regular file of at most ``max_bytes``. Unreadable
    otherwise; any other OSError as raised."""
    root = path.parent if root is None else root
    *dirs, name = path.relative_to(root).parts
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in dirs:
            below = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = below
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Unreadable(
                "a symbolic link or not a directory on the way: not followed"
            ) from None
        raise
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(64 * 1024, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise Unreadable(f"over {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


@dataclass
class EnvFile:
    """A variables file, re-read only when it changed. A file that cannot be read or does not
    parse is logged and the last good contents are used: a bad push must not strip a running
    dev server, or the next command, of its whole environment. No file: no variables."""

    path: Path
    max_bytes: int = ENV_FILE_MAX
    #: Below it, no link is followed on the way to the file (the home; None: its directory).
    root: Path | None = None
    _seen: Signature = None
    _values: dict[str, str] = field(default_factory=dict)
    #: The sha256 of the contents ``load`` last returned (None: no file). A rewrite of the
    #: same bytes (a no-op push: new inode and mtime) leaves it as it is.
    digest: str | None = None

    def load(self) -> dict[str, str]:
        sig = signature(self.path)
        if sig == self._seen:
            return dict(self._values)
        self._seen = sig
        try:
            raw = read_bounded(self.path, self.max_bytes, self.root) if sig is not None else None
            self._values = parse_env_file(raw.decode() if raw is not None else "")
            self.digest = hashlib.sha256(raw).hexdigest() if raw is not None else None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("process.env_invalid", path=str(self.path), error=str(exc))
        return dict(self._values)
