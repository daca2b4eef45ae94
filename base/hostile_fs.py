"""Root's operations on a tree a machine controls (its home): by file descriptor, never by path.

A machine can put anything at any name of its home at any moment: a symbolic link to a host
file, a FIFO (an ``open`` that never returns), a device node, a file of terabytes, or a
directory it swaps with a link (``renameat2(RENAME_EXCHANGE)``) while root walks it. A path
root resolves there may end anywhere on the host. So root reaches into such a tree only here:

- the top directory is opened by its path (the caller's trusted one: its parents are the
  platform's), everything below it one component at a time, relative to the directory
  descriptor above, with ``O_NOFOLLOW``: a link is never followed, at any depth;
- a file is opened ``O_PATH`` first and must be a regular file (``fstat``) before it is opened
  for reading (through ``/proc/self/fd``, the same inode), so no FIFO or device is ever opened,
  and it is read up to a cap;
- a walk descends only into a directory it opened itself (``O_DIRECTORY | O_NOFOLLOW``) that is
  the one it listed (same device and inode) and on the top's filesystem, acts on the entries
  relative to that descriptor (``fchownat`` with ``AT_SYMLINK_NOFOLLOW``), and stops at
  ``MAX_DEPTH``; a walk that only counts (``disk_use``) also stops at a bound of entries and
  of time that its caller sets (providers/disk_walk.py runs it in the machine's cgroups).

What this leaves to the kernel: a machine cannot make device nodes (no ``CAP_MKNOD``) and cannot
hard-link a host file into its home (what it sees of the host is on other mounts: ``EXDEV``); a
device node found anyway is never opened and never given away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

#: How deep a walk goes below its top (one open descriptor per level).
MAX_DEPTH = 256
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Refused(OSError):
    """A name root will not act on: not what it must be (a link, a FIFO, a device, a file over
    the cap), or a path that would leave the tree."""


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or rel.startswith("/"):
        raise Refused(errno.EINVAL, f"not a path inside the tree: {rel!r}")
    return parts


def open_top(path: Path) -> int:
    """A descriptor of the tree's top directory, opened by ``path`` (the caller's: trusted)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir_at(dir_fd: int, parts: list[str]) -> int:
    """The directory ``parts`` below ``dir_fd``, each component opened relative to the one
    above with ``O_NOFOLLOW``: a link anywhere on the way is refused (ELOOP)."""
    fd = os.dup(dir_fd)
    for name in parts:
        try:
            nxt = os.open(name, _DIR, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def read_file(top: Path, rel: str, cap: int) -> bytes:
    """The bytes of the regular file ``rel`` below ``top``, at most ``cap`` of them. Refused
    (an OSError) for a link at any component, a non-regular file, or a file over ``cap``."""
    with _closing(_open_regular(top, rel, cap)) as f:
        data = os.read(f, cap + 1)
    if len(data) > cap:  # grew since the fstat
        raise Refused(errno.EFBIG, f"{rel} is over {cap} bytes")
    return data


def _open_regular(top: Path, rel: str, cap: int) -> int:
    *dirs, name = _parts(rel)
    with _closing(open_top(top)) as t, _closing(open_dir_at(t, dirs)) as d:
        path = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
    with _closing(path):
        st = os.fstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(errno.EINVAL, f"{rel} is not a regular file")
        if st.st_size > cap:
            raise Refused(errno.EFBIG, f"{rel} is over {cap} bytes")
        # The inode just checked, opened for reading: its name may point elsewhere by now.
        return os.open(f"/proc/self/fd/{path}", _FILE)


def chown_tree(top: Path, uid: int, gid: int) -> int:
    """``top`` and everything below it given to ``uid``:``gid`` (device nodes excepted), by
    descriptor; how many entries changed owner."""
    with _closing(open_top(top)) as fd:
        st = os.fstat(fd)
        changed = _give(fd, None, st, uid, gid)
        for at, name, found in _entries_below(fd, st.st_dev, 1):
            changed += _give(at, name, found, uid, gid)
        return changed


@dataclass(frozen=True)
class DiskUse:
    """What a walk of a tree counted: its blocks' bytes, its entries, and whether it saw it
    all (False: it stopped at its bound of entries or time, so the tree takes at least that)."""

    bytes: int
    entries: int
    complete: bool


def disk_use(top: Path, *, max_entries: int, until: float) -> DiskUse:
    """What ``top`` and everything below it take on disk (allocated blocks), by descriptor,
    never following a link, on ``top``'s filesystem alone; the walk stops after
    ``max_entries`` entries or at ``until`` (``time.monotonic()``), whichever comes first: a
    machine makes its home as large as it likes, and the walk is the host's work."""
    with _closing(open_top(top)) as fd:
        st = os.fstat(fd)
        total, entries = st.st_blocks * 512, 0
        walk = _entries_below(fd, st.st_dev, 1)
        try:
            for _, _, found in walk:
                if entries >= max_entries or time.monotonic() >= until:
                    return DiskUse(total, entries, complete=False)
                total, entries = total + found.st_blocks * 512, entries + 1
        finally:
            walk.close()  # the descriptors it holds open, closed now
        return DiskUse(total, entries, complete=True)


def _give(dir_fd: int, name: str | None, st: os.stat_result, uid: int, gid: int) -> int:
    """Change the owner of ``name`` in ``dir_fd`` (None: ``dir_fd`` itself), never following."""
    if (st.st_uid, st.st_gid) == (uid, gid) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return 0
    if name is None:
        os.fchown(dir_fd, uid, gid)
    else:
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile: nothing to give
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    return 1


def _entries_below(
    dir_fd: int, dev: int, depth: int
) -> Generator[tuple[int, str | None, os.stat_result], None, None]:
    """Each entry below ``dir_fd``, never followed: a non-directory as (the descriptor of its
    directory, its name, its stat); a directory still the one listed as (its own descriptor,
    None, its stat), then what is below it. A descriptor is open only while it is yielded."""
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield dir_fd, entry.name, st
                continue
            child = _enter(dir_fd, entry.name, st, dev, depth)
            if child is None:
                continue
            with _closing(child):
                yield child, None, st
                yield from _entries_below(child, dev, depth + 1)


def _enter(dir_fd: int, name: str, listed: os.stat_result, dev: int, depth: int) -> int | None:
    """The directory ``name`` if it is still the one listed, on the top's filesystem, and not
    too deep; else None (it was swapped: what it is now is not followed)."""
    if depth > MAX_DEPTH or listed.st_dev != dev:
        log.warning("hostile_fs.not_entered", name=name, depth=depth, other_fs=listed.st_dev != dev)
        return None
    try:
        fd = os.open(name, _DIR, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # a link now: never followed
            raise
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino):
        os.close(fd)
        return None
    return fd
