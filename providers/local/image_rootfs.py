"""An image's root file system on this host, for ``local`` machines: unpacked once per image
ID from the Docker engine (``docker export`` of a container created from it, never started)
into ``<data dir>/environments/rootfs/<id>``, read-only from then on (each machine writes in an
overlay of its own: providers/sandbox/image.py).

An image is untrusted input, unpacked by root, so the archive is never extracted by path:
every entry is made relative to a descriptor of the directory above it, which was itself
opened one component at a time with ``O_NOFOLLOW`` (base/hostile_fs.py). A link in the
image, absolute or not, is made as a link and never followed on the host, so an entry under
a linked directory (``etc -> /host/etc``, then ``etc/passwd``) is dropped, not written through
it. Device nodes and FIFOs are dropped; setuid and setgid bits are cleared; names with ``..``
are dropped; hard links only join two entries inside the tree. The tree's top is root's,
0755, whatever the image says, so that nothing of a machine can change what is at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import aiodocker
import structlog

from base.hostile_fs import Refused, open_dir_at, open_top
from contracts.errors import ProviderError
from providers import scratch
from providers.docker import helper_container

log = structlog.get_logger(__name__)

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def rootfs_dir(data_dir: Path) -> Path:
    return data_dir / "environments" / "rootfs"


class ImageRoots:
    """Unpacked image roots under the data dir, one per image ID, made once (one at a time)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = rootfs_dir(data_dir)
        self._lock = asyncio.Lock()

    async def ensure(self, docker: aiodocker.Docker, image_id: str) -> Path:
        name = image_id.removeprefix("sha256:")
        if not name.isalnum():
            raise ProviderError(f"not an image ID: {image_id!r}")
        done = self.root / name
        async with self._lock:
            if done.is_dir():
                return done
            self.root.mkdir(parents=True, exist_ok=True)
            async with scratch.scratch_dir(self.root, ".partial-") as work:
                archive = work / "rootfs.tar"
                await export(docker, image_id, archive)
                tree = work / "tree"
                dropped = await asyncio.to_thread(unpack, archive, tree)
                tree.rename(done)
            log.info("provider.image_unpacked", image=image_id, dropped=dropped)
            return done


async def export(docker: aiodocker.Docker, image_id: str, to: Path) -> None:
    """The image's file system as one tar (a container of it, created, never started)."""
    config: dict[str, Any] = {"Image": image_id, "Cmd": ["true"], "NetworkDisabled": True}
    async with (
        helper_container(docker, config, f"export {image_id}") as c,
        docker._query(f"containers/{c.id}/export", timeout=None) as resp,
    ):
        with to.open("wb") as out:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                await asyncio.to_thread(out.write, chunk)


def unpack(archive: Path, dest: Path) -> int:
    """Unpack ``archive`` into the new directory ``dest`` (see the module); how many entries
    were dropped."""
    dest.mkdir(mode=0o755)
    dropped = 0
    top = open_top(dest)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                try:
                    _entry(top, tar, member)
                except (Refused, OSError) as exc:
                    dropped += 1
                    log.debug("provider.image_entry_dropped", name=member.name, error=str(exc))
        os.fchown(top, 0, 0)
        os.fchmod(top, 0o755)
    finally:
        os.close(top)
    return dropped


def _split(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused(errno.EINVAL, f"a name with ..: {name!r}")
    return parts


@contextlib.contextmanager
def _parent(top: int, parts: list[str]) -> Iterator[int]:
    """The directory above ``parts``' last name (no link followed on the way)."""
    fd = open_dir_at(top, parts[:-1])
    try:
        yield fd
    finally:
        os.close(fd)


def _entry(top: int, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    parts = _split(m.name)
    if not parts:
        return  # the top itself: root's, whatever the image says
    if not (m.isdir() or m.isreg() or m.issym() or m.islnk()):
        raise Refused(errno.EPERM, "a device node or FIFO")
    mode = m.mode & 0o1777  # no setuid, no setgid
    with _parent(top, parts) as at:
        name = parts[-1]
        if m.isdir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=at)
            _own(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at), m, mode)
            return
        _clear(at, name)
        if m.issym():
            os.symlink(m.linkname, name, dir_fd=at)
            os.chown(name, m.uid, m.gid, dir_fd=at, follow_symlinks=False)
        elif m.islnk():
            source = _split(m.linkname)
            with _parent(top, source) as src_at:
                os.link(source[-1], name, src_dir_fd=src_at, dst_dir_fd=at,
                        follow_symlinks=False)  # fmt: skip
        else:
            fd = os.open(name, _NEW, 0o600, dir_fd=at)
            try:
                _copy(tar.extractfile(m), fd)
            finally:
                _own(fd, m, mode)


def _clear(at: int, name: str) -> None:
    """A later entry of the same name replaces the earlier one (not a directory's tree)."""
    try:
        st = os.stat(name, dir_fd=at, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise Refused(errno.EISDIR, f"{name}: a directory already")
    os.unlink(name, dir_fd=at)


def _copy(src: IO[bytes] | None, fd: int) -> None:
    if src is None:
        return
    while chunk := src.read(_CHUNK):
        os.write(fd, chunk)


def _own(fd: int, m: tarfile.TarInfo, mode: int) -> None:
    """Give the open ``fd`` the entry's owner and ``mode``, then close it."""
    try:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
