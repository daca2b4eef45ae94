"""A build's scratch directory, safe to delete whatever the build left in it.

A root file system being built (debootstrap) has the host's ``/proc`` (and, with other tools,
``/sys`` or ``/dev``) mounted inside it while its tools run. A build cancelled or failed half way
leaves them mounted, and a plain ``rmtree`` would then walk into the host's own file systems
and delete what it can there. So a scratch directory's cleanup first detaches every mount at or
under it (lazily, the deepest first, then checked again in ``/proc/self/mountinfo``), and only
then deletes, by file descriptor: it never follows a link and never descends into another file
system or a mount point. What it cannot delete that way it leaves, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from contracts.errors import ProviderError

log = structlog.get_logger(__name__)

#: umount2(2)'s lazy flag: detach now (with every mount below it), release when no longer busy.
MNT_DETACH = 2
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mount_points() -> set[Path]:
    """Every mount point of this process's mount namespace (``/proc/self/mountinfo``)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return {Path(_unescape(line.split()[4])) for line in f if line.strip()}


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in a path as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """The mount points at or below ``path``, the deepest first."""
    top = Path(os.path.realpath(path))
    found = [m for m in mount_points() if m == top or top in m.parents]
    return sorted(found, key=lambda m: len(m.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Detaches every mount at or below ``path``; raises ProviderError if any is still there."""
    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_under(path):
        # EINVAL: no longer a mount point (it went with a mount above it, detached first).
        if libc.umount2(os.fsencode(point), MNT_DETACH) != 0 and ctypes.get_errno() != 22:
            err = ctypes.get_errno()
            log.warning("scratch.umount_failed", path=str(point), error=os.strerror(err))
    if left := mounts_under(path):
        raise ProviderError(f"still mounted under {path}: {', '.join(map(str, left))}")


def remove_tree(path: Path) -> None:
    """Deletes ``path`` and everything under it that is on its own file system, by file
    descriptor, following no link and entering no mount point; raises ProviderError naming
    what it had to leave."""
    top = Path(os.path.realpath(path))
    parent = os.open(top.parent, _DIR_FLAGS)
    try:
        try:
            fd = os.open(top.name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        mounts = mount_points()
        if top in mounts:
            os.close(fd)
            raise ProviderError(f"not deleting {top}: it is a mount point")
        try:
            left = _empty(fd, os.fstat(fd).st_dev, top, mounts)
        finally:
            os.close(fd)
        if left:
            raise ProviderError(f"left under {top} (another file system): {', '.join(left[:5])}")
        with contextlib.suppress(FileNotFoundError):  # removed by another meanwhile
            os.rmdir(top.name, dir_fd=parent)
    finally:
        os.close(parent)


def _empty(fd: int, dev: int, at: Path, mounts: set[Path]) -> list[str]:
    """Deletes what directory ``fd`` holds on device ``dev``; the paths it left. An entry that
    is gone meanwhile (another removal of the same tree: two deletes of one snapshot) is
    gone as asked."""
    left: list[str] = []
    for name in os.listdir(fd):
        with contextlib.suppress(FileNotFoundError):
            left += _remove_entry(fd, name, dev, at / name, mounts)
    return left


def _remove_entry(fd: int, name: str, dev: int, where: Path, mounts: set[Path]) -> list[str]:
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if st.st_dev != dev or where in mounts:
        return [str(where)]
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=fd)
        return []
    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
    try:
        # Checked again on what was opened: the entry may have been swapped since.
        inner = [str(where)] if os.fstat(sub).st_dev != dev else []
        inner = inner or _empty(sub, dev, where, mounts)
    finally:
        os.close(sub)
    if not inner:
        os.rmdir(name, dir_fd=fd)
    return inner


def clean(path: Path) -> None:
    """Unmounts what is mounted under ``path``, then deletes it (see the module's docstring)."""
    unmount_under(path)
    remove_tree(path)


@contextlib.asynccontextmanager
async def scratch_dir(parent: Path, prefix: str) -> AsyncIterator[Path]:
    """A new directory under ``parent``, cleaned (:func:`clean`, in a thread) when the block
    ends, however it ends. A cleanup failing while an error (or a cancellation) is on its way
    is logged and that error goes on; otherwise the cleanup's error is raised. A second
    cancellation does not stop a cleanup once begun (shielded)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        yield path
    except BaseException:
        try:
            await asyncio.shield(asyncio.to_thread(clean, path))
        except (OSError, ProviderError) as exc:
            log.error("scratch.clean_failed", path=str(path), error=str(exc))
        raise
    await asyncio.shield(asyncio.to_thread(clean, path))


def sweep(parent: Path, prefix: str) -> None:
    """Cleans the scratch directories a killed process left under ``parent`` (no cleanup ran)."""
    for path in sorted(parent.glob(f"{prefix}*")) if parent.is_dir() else ():
        if path.is_dir() and not path.is_symlink():
            clean(path)
