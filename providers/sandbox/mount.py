"""A directory of the host given to a running sandbox: a bind mount made inside the sandbox's
own mount namespace, by descriptor.

A warm-pool sandbox (providers/local/pool.py) is started with a home of its own. When it is
claimed for a machine that has a home already (a stopped machine's start, a fork's first
start), that home must appear in it, at the machine's own path, while its processes run. A
mount made on the host does not reach a sandbox (bwrap's mounts are copies of the host's,
made before the home was chosen), so root makes it from inside:

1. on the host, ``open_tree(OPEN_TREE_CLONE)`` makes a detached bind of the home, opened by
   its path (the platform's own: ``machines/<id>/home``, its last component not followed);
2. a thread of its own (providers/sandbox/namespaces.py) enters the sandbox's mount and UTS
   namespaces through a pidfd of the sandbox's init (checked to be bwrap's child), opens the
   target's directories one at a time from the sandbox's root with ``O_NOFOLLOW`` (making
   those missing below ``base``, bwrap's root-owned tmpfs over the data dir, which the
   machine's uid cannot write), ``move_mount``s the bind there and sets the hostname; the
   thread then ends, never to run anything else.

The mount lives as long as the sandbox's namespace: the host's mount table never sees it, and
nothing is left to undo when the machine stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from contracts.errors import ProviderError
from providers.sandbox.namespaces import CLONE_NEWNS, CLONE_NEWUTS, checked, in_namespaces, libc

libc.syscall.restype = ctypes.c_long
#: x86_64 and aarch64 (the generic table) agree on these numbers.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_OPEN_TREE_CLONE = 1
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOVE_MOUNT_T_EMPTY_PATH = 0x40
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def detached_bind(source: Path) -> int:
    """A descriptor of a bind of ``source`` not attached anywhere yet (closed by the caller)."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_SYMLINK_NOFOLLOW
    return checked(libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, bytes(source), flags), "open_tree")


def _open_path(base: Path, target: Path) -> int:
    """``target`` (at or below ``base``) opened from the namespace's root, component by
    component, never through a link; the missing ones below ``base`` made (0755, root's)."""
    fd = os.open("/", _DIR)
    try:
        for depth, name in enumerate(target.parts[1:], start=1):
            if depth > len(base.parts) - 1:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
            nxt = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _attach(source_fd: int, base: Path, target: Path, hostname: str) -> None:
    """In the sandbox's namespaces: the bind at ``target``, and the hostname."""
    target_fd = _open_path(base, target)
    try:
        flags = _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH
        checked(libc.syscall(_SYS_MOVE_MOUNT, source_fd, b"", target_fd, b"", flags),
                "move_mount")  # fmt: skip
    finally:
        os.close(target_fd)
    name = hostname.encode()
    checked(libc.sethostname(name, len(name)), "sethostname")


def mount_in_sandbox(
    init_pid: int, parent_pid: int, source: Path, base: Path, target: Path, hostname: str
) -> None:
    """Bind ``source`` (a host directory) at ``target`` (absolute, below ``base``) in the
    namespaces of the sandbox whose init is ``init_pid`` (``parent_pid``'s child: bwrap's), and
    name its host ``hostname``. Blocking: run it off the event loop."""
    try:
        source_fd = detached_bind(source)
        try:
            in_namespaces(init_pid, CLONE_NEWNS | CLONE_NEWUTS,
                          lambda: _attach(source_fd, base, target, hostname),
                          parent=parent_pid)  # fmt: skip
        finally:
            os.close(source_fd)
    except OSError as exc:
        raise ProviderError(f"cannot mount {source} in sandbox {parent_pid}: {exc}") from None
