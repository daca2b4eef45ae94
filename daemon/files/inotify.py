"""Linux's inotify through ctypes over the C library the daemon already runs on.

ctypes rather than a package (``inotify_simple``, ``watchdog``): the daemon brings its own
runtime into any image and keeps its dependencies few (providers/docker/image.py
``DAEMON_DEPS``), and it already calls libc this way (daemon/supervision/nodump.py): ``CDLL(None)``
is the
process's own symbols, so no library is looked for by name in an image that may have none.
Three calls (``inotify_init1``, ``inotify_add_watch``, ``inotify_rm_watch``) and a parser of
what ``read`` returns are all it takes.

A watch is added by descriptor: the caller opens what it watches (walking the home by
descriptors, daemon/files/homefs.py) and the watch is added on ``/proc/self/fd/<fd>``, which the
kernel resolves to that very inode, so no path is looked up again after it was checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
#: What every watch asks for: what changes the tree (and the watched path itself).
STRUCTURE = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_HEADER = struct.Struct("iIII")
#: One read takes what fits here (the kernel never splits an event across reads).
READ_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawEvent:
    wd: int
    mask: int
    cookie: int
    name: str


class InotifyError(OSError):
    """An inotify call failed (its errno and words)."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def _checked(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise InotifyError(code, f"{what}: {os.strerror(code)}")
    return result


class Inotify:
    """One inotify instance: a non-blocking descriptor, closed by ``close`` (or the block)."""

    def __init__(self) -> None:
        self._libc = _libc()
        self.fd = _checked(self._libc.inotify_init1(_NONBLOCK_CLOEXEC), "inotify_init1")

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def watch_fd(self, fd: int, mask: int) -> int:
        """A watch on what ``fd`` is open on (its inode); the watch descriptor."""
        path = f"/proc/self/fd/{fd}".encode()
        return _checked(self._libc.inotify_add_watch(self.fd, path, mask), "inotify_add_watch")

    def unwatch(self, wd: int) -> None:
        """Drop a watch (one the kernel dropped already is no error)."""
        with contextlib.suppress(InotifyError):
            _checked(self._libc.inotify_rm_watch(self.fd, wd), "inotify_rm_watch")

    def read(self) -> list[RawEvent]:
        """The events queued now (none: nothing is)."""
        try:
            data = os.read(self.fd, READ_BYTES)
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return []
            raise
        return list(parse(data))


def parse(data: bytes) -> Iterator[RawEvent]:
    """The events in what one read returned (a name is NUL-padded; undecodable bytes are
    kept as surrogates, as ``os.fsdecode`` keeps them)."""
    at = 0
    while at + _HEADER.size <= len(data):
        wd, mask, cookie, size = _HEADER.unpack_from(data, at)
        at += _HEADER.size
        raw = data[at : at + size].split(b"\0", 1)[0]
        at += size
        yield RawEvent(wd, mask, cookie, os.fsdecode(raw))
