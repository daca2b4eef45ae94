"""Where local machines' homes live, and how one is copied: copy-on-write or a plain copy.

With copy-on-write (``FLEET_HOMES_FS``: ``btrfs``, or ``auto`` where it is at hand) every home
is a btrfs subvolume, and a fork or a snapshot of it is one ``btrfs subvolume snapshot``: atomic
(a file being written is whole or absent in the copy, never torn), with no pause of the source
and no disk used until either side writes. The subvolumes live on the data dir's own filesystem
when that is btrfs; otherwise on a sparse image fleetd makes and loop-mounts at
``<data>/homes-fs`` (``homes.btrfs``), with ``machines``, ``pool`` and ``snapshots`` of the data
dir links into it: a pooled home is renamed into a machine's directory on claim, so both must be
on one mount.

``auto`` uses an image only once made (``btrfs`` makes it): it never mounts one unasked. Without
copy-on-write a fork is a plain copy, made as the source machine's own uid (root never walks a
tree the machine controls) while the source's cgroup is frozen, so that no file changes under
the copy; the pause is measured and reported.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import structlog

from base.bounded_output import run_capped_sync
from contracts.bus.events import HomeCopy
from contracts.errors import ProviderError
from providers.sandbox import MachineCgroup, as_uid, frozen

log = structlog.get_logger(__name__)

IMAGE = "homes.btrfs"
MOUNT = "homes-fs"
#: The data dir's directories that live on the copy-on-write filesystem.
MANAGED = ("machines", "pool", "snapshots")
BTRFS_MAGIC = 0x9123683E
#: What a plain copy's errors keep (cp names each file it could not copy).
_COPY_SAID_CAP = 64 * 1024
#: A btrfs subvolume's root directory always has this inode number.
SUBVOLUME_INO = 256


def fs_type(path: Path) -> int:
    """The filesystem magic of ``path`` (statfs's f_type)."""
    out = subprocess.run(["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True)
    return int(out.stdout.strip() or "0", 16)


def is_btrfs(path: Path) -> bool:
    return path.exists() and fs_type(path) == BTRFS_MAGIC


def is_subvolume(path: Path) -> bool:
    st = os.lstat(path)
    return st.st_ino == SUBVOLUME_INO and is_btrfs(path)


def _mounted(mount: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mount) for line in f)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProviderError(f"{' '.join(argv[:3])} failed: {done.stderr.strip()[:300]}")


def prepare(data_dir: Path, mode: str, image_gb: int = 64) -> bool:
    """Make the homes' filesystem ready for ``mode``; whether homes are copy-on-write. Under
    a lock: the provisioners of one data dir (HA) make and mount one image."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "homes-fs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare(data_dir, mode, image_gb)


def _prepare(data_dir: Path, mode: str, image_gb: int) -> bool:
    if mode == "plain":
        return False
    if is_btrfs(data_dir):
        return True  # subvolumes right where the homes are
    image = data_dir / IMAGE
    if mode == "auto" and not image.exists():
        return False
    if not shutil.which("mkfs.btrfs"):
        raise ProviderError("FLEET_HOMES_FS=btrfs needs btrfs-progs (mkfs.btrfs)")
    mount = data_dir / MOUNT
    for name in MANAGED:
        d = data_dir / name
        if d.is_dir() and not d.is_symlink() and any(d.iterdir()):
            if mode == "auto":
                log.warning("homes_fs.plain_kept", reason=f"{d} has homes on the data dir")
                return False
            raise ProviderError(f"FLEET_HOMES_FS=btrfs: {d} already holds plain homes")
    if not image.exists():
        with open(image, "wb") as f:
            f.truncate(image_gb * 1024**3)  # sparse: disk is used as homes grow
        _run("mkfs.btrfs", "-q", str(image))
    mount.mkdir(exist_ok=True)
    if not _mounted(mount):
        _run("mount", "-o", "loop,noatime", str(image), str(mount))
    for name in MANAGED:
        (mount / name).mkdir(exist_ok=True)
        link = data_dir / name
        if link.is_dir() and not link.is_symlink():
            link.rmdir()  # empty (checked above)
        if not link.is_symlink():
            link.symlink_to(MOUNT + "/" + name)
    log.info("homes_fs.mounted", image=str(image), mount=str(mount))
    return True


def unmount(data_dir: Path) -> bool:
    """Unmount the managed image (every machine stopped); False if it stays mounted."""
    mount = data_dir.resolve() / MOUNT
    if not mount.is_dir() or not _mounted(mount):
        return True
    done = subprocess.run(["umount", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("homes_fs.unmount_failed", error=done.stderr.strip())
    return done.returncode == 0


def make_home(home: Path, cow: bool) -> None:
    """An empty home at ``home`` (a subvolume with copy-on-write), unless one is there."""
    if home.exists():
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    if cow:
        _run("btrfs", "subvolume", "create", str(home))
    else:
        home.mkdir()


def remove_home(home: Path) -> None:
    """Remove a home (a subvolume, or a plain directory)."""
    if home.is_dir() and not home.is_symlink() and is_subvolume(home):
        _run("btrfs", "subvolume", "delete", str(home))
    else:
        shutil.rmtree(home, ignore_errors=True)


def snapshot(source: Path, target: Path, *, readonly: bool = False) -> None:
    """``target``, a btrfs snapshot of the subvolume ``source`` (atomic; no pause)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _run("btrfs", "subvolume", "snapshot", *(["-r"] if readonly else []), str(source), str(target))


def plain_copy(source: Path, target: Path, uid: int | None) -> None:
    """``cp -a`` of ``source`` to ``target``, as ``uid`` (the source machine's own) when given:
    it reaches both through descriptors root opened (the machine's directory is root's alone),
    can read only what the machine can, and follows no link (``-P``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir()
    if uid is not None:
        os.chown(target, uid, uid)
    src = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    dst = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        argv = ["cp", "-a", "-P", "--one-file-system", f"/proc/self/fd/{src}/.",
                f"/proc/self/fd/{dst}"]  # fmt: skip
        if uid is not None:
            argv = as_uid(uid, argv)
        # cp's complaints name the machine's files, one line each: read bounded.
        done = run_capped_sync(argv, cap=_COPY_SAID_CAP, timeout_s=None, pass_fds=(src, dst))
    finally:
        os.close(src)
        os.close(dst)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()[:300]
        raise ProviderError(f"copying the home failed: {said}")


def clone_home(
    source: Path,
    target: Path,
    *,
    label: str,
    uid: int | None,
    cgroups: list[MachineCgroup],
    running: bool = False,
    readonly: bool = False,
    upper: tuple[Path, Path] | None = None,
) -> HomeCopy:
    """``target``, the home ``source`` as of one instant: a snapshot where ``source`` is a
    subvolume (``readonly``: a read-only one), else a plain copy with the source's cgroups
    frozen. ``upper`` (from, to): the source's writes outside its home (its environment's
    overlay), copied at the same instant, so the source is frozen for that copy too: root
    copies it, and only a frozen machine cannot swap a link in under it. A ``running`` source
    that cannot be frozen is refused (cgroup.py ``NotFrozen``) before anything is copied."""
    start = time.monotonic()
    cow = is_subvolume(source)
    if cow and upper is None:
        snapshot(source, target, readonly=readonly)
        took = (time.monotonic() - start) * 1000
        return HomeCopy(source=label, how="cow", pause_ms=0.0, took_ms=round(took, 1))
    with frozen(cgroups, running=running):
        # The pause counts from the moment every process is frozen (what the freeze waited
        # for before that, each process stopped at its own instant within it) to the thaw.
        stopped = time.monotonic()
        if cow:
            snapshot(source, target, readonly=readonly)
        else:
            plain_copy(source, target, uid)
        if upper is not None:
            copy_upper(*upper)
        pause = (time.monotonic() - stopped) * 1000
    took = (time.monotonic() - start) * 1000
    return HomeCopy(source=label, how="cow" if cow else "copy", pause_ms=round(pause, 1),
                    took_ms=round(took, 1))  # fmt: skip


def copy_upper(source: Path, target: Path) -> None:
    """An overlay's upper layer copied whole, as root: it holds files of root (those the
    image had, changed) and the overlay's own whiteouts and opaque marks, which only root can
    read and make. Its processes are frozen or gone, so nothing swaps a link into it; cp
    follows none (``-P``) and stays on its filesystem."""
    if not source.is_dir() or source.is_symlink():
        return
    plain_copy(source, target, None)
