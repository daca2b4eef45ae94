"""The second pass of a home's copy (providers/docker/copy.py), run in the copy's helper container
with the source machine paused: makes ``dst`` (a ``cp -a`` of ``src`` made while the machine
ran) equal to ``src``. ``python3 -I -c <this file> SRC DST SINCE``.

An entry whose inode changed since ``SINCE`` (ns since the epoch) by its ctime, which no process
can set back, is copied again with its owner, mode and times; an entry gone from ``src`` is
removed from ``dst``; every other entry stayed as it was all through the first pass, which
started after ``SINCE``, so the first pass copied it right. That pass starts with a ``syncfs``:
a page of a file mapped for writing that was dirty and writable before it would take writes
without stamping the file's ctime; written back, it faults, and stamps, at its next write.
``SINCE`` is a second before that pass, for the coarse clock the kernel stamps with.

A file copied again loses extended attributes the first pass kept (its content, holes, owner,
mode and times are the source's). Standard library only: it runs on the machine image's Python.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys


def kind(mode: int) -> int:
    return stat.S_IFMT(mode)


def entry_kind(e: os.DirEntry[str]) -> int:
    """The kind of a directory entry, from the directory alone (no ``stat``)."""
    if e.is_symlink():
        return stat.S_IFLNK
    if e.is_dir(follow_symlinks=False):
        return stat.S_IFDIR
    if e.is_file(follow_symlinks=False):
        return stat.S_IFREG
    return kind(e.stat(follow_symlinks=False).st_mode)


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def attributes(st: os.stat_result, path: str) -> None:
    """``path``'s owner, mode and times, ``st``'s (the owner first: it clears set-id bits)."""
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_file(src: str, dst: str) -> None:
    """``dst`` (new: never a link followed), ``src``'s content with its holes: only its data
    is copied (a sparse file stays sparse)."""
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        size = os.fstat(fin.fileno()).st_size
        at = 0
        while at < size:
            try:
                at = os.lseek(fin.fileno(), at, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but a hole from here
                    break
                raise
            end = os.lseek(fin.fileno(), at, os.SEEK_HOLE)
            copy_range(fin.fileno(), fout.fileno(), at, end)
            at = end
        os.ftruncate(fout.fileno(), size)


def copy_range(fin: int, fout: int, at: int, end: int) -> None:
    """Bytes ``at`` to ``end`` of ``fin`` to the same offsets of ``fout``: in the kernel where it
    can (``copy_file_range``), else through this process."""
    while at < end:
        try:
            n = os.copy_file_range(fin, fout, end - at, at, at)
        except OSError:
            n = os.pwrite(fout, os.pread(fin, min(end - at, 1 << 20), at), at)
        if n <= 0:
            raise OSError(errno.EIO, f"the copy stopped at {at} of {end}")
        at += n


class Sync:
    def __init__(self, since: int) -> None:
        self.since = since
        #: Files of several links made in this pass: (device, inode) -> their first copy.
        self.linked: dict[tuple[int, int], str] = {}

    def tree(self, src: str, dst: str) -> None:
        """``dst``'s entries, ``src``'s; then ``dst``'s attributes (an entry made or removed
        in a directory changes its times)."""
        theirs = {e.name: e for e in os.scandir(src)}
        for e in os.scandir(dst):
            if e.name not in theirs:
                remove(e.path)
        ours = {e.name: entry_kind(e) for e in os.scandir(dst)}
        for name, e in theirs.items():
            self.entry(e.path, os.path.join(dst, name), ours.get(name))
        attributes(os.lstat(src), dst)

    def entry(self, src: str, dst: str, has: int | None) -> None:
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            if has not in (None, stat.S_IFDIR):
                remove(dst)
                has = None
            if has is None:
                os.mkdir(dst)
            self.tree(src, dst)
            return
        if has == kind(st.st_mode) and st.st_ctime_ns < self.since:
            return  # unchanged since before the first pass
        if has is not None:
            remove(dst)
        self.make(src, dst, st)
        attributes(st, dst)

    def make(self, src: str, dst: str, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                first = self.linked.setdefault((st.st_dev, st.st_ino), dst)
                if first != dst:
                    os.link(first, dst)
                    return
            copy_file(src, dst)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(dst)
        else:  # a socket (a device cannot be made in a machine)
            os.mknod(dst, st.st_mode, st.st_rdev)


def main(argv: list[str]) -> int:
    src, dst, since = argv[1], argv[2], int(argv[3])
    Sync(since).tree(src, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
