"""An ID-mapped mount (``mount_setattr(MOUNT_ATTR_IDMAP)``, Linux 5.12+): a tree seen with its
owners translated, its files untouched on disk. util-linux here has no ``X-mount.idmap``, so
the three system calls are made directly (``open_tree``, ``mount_setattr``, ``move_mount``).

The mapping is a user namespace's: one is made for the call (``user_namespace``: ``unshare
--user`` running ``sleep``, its maps written by us), and ended once the mount holds it."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

from contracts.errors import ProviderError
from providers.sandbox.machine_uid import as_uid

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _AT_RECURSIVE, _AT_EMPTY_PATH = 1, 0x8000, 0x1000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_IDMAP = 0x1, 0x100000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip


def _check(what: str, result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise ProviderError(f"cannot make an ID-mapped mount ({what}): {os.strerror(err)}")
    return result


Ids = list[tuple[int, int]]


def user_namespace(
    uids: Ids, gids: Ids, owner: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """A user namespace mapping each (inside, host) pair of ``uids`` and ``gids``, made by a
    process of host uid ``owner`` (None: ours), whose it then is; its holder (to end) and a
    descriptor of it. The kernel charges what a namespace's processes hold (inotify instances,
    the ``ucounts``) to its owner's uid as well as to their own."""
    argv = ["unshare", "--user", "sleep", "infinity"]
    holder = subprocess.Popen(argv if owner is None else as_uid(owner, argv),
                              stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    try:
        ours = os.stat("/proc/self/ns/user").st_ino
        while os.stat(f"/proc/{holder.pid}/ns/user").st_ino == ours:
            if holder.poll() is not None:
                raise ProviderError("cannot make a user namespace for an ID-mapped mount")
            os.sched_yield()
        for name, ids in (("uid_map", uids), ("gid_map", gids)):
            text = "".join(f"{inside} {host} 1\n" for inside, host in ids)
            Path(f"/proc/{holder.pid}/{name}").write_text(text)
        return holder, os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        holder.kill()
        holder.wait()
        raise


def mount_idmapped(source: Path, target: Path, uids: Ids, gids: Ids) -> None:
    """``source`` at ``target`` (an existing directory), read-only, each (on-disk id, seen
    as) pair of ``uids`` and ``gids`` translated, every other owner seen as nobody."""
    libc = ctypes.CDLL(None, use_errno=True)
    holder, userns = user_namespace(uids, gids)
    tree = -1
    try:
        flags = _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC
        tree = _check("open_tree", libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD,
                                                str(source).encode(), flags))  # fmt: skip
        attr = _MountAttr(attr_set=_MOUNT_ATTR_IDMAP | _MOUNT_ATTR_RDONLY, userns_fd=userns)
        _check("mount_setattr", libc.syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH,
                                             ctypes.byref(attr), ctypes.sizeof(attr)))  # fmt: skip
        to = str(target).encode()
        _check(
            "move_mount",
            libc.syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, to, _MOVE_MOUNT_F_EMPTY_PATH),
        )
    finally:
        if tree >= 0:
            os.close(tree)
        os.close(userns)
        holder.kill()
        holder.wait()
