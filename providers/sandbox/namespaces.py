"""Work done inside a machine's namespaces by root on the host: on a thread of its own, which
enters them and then ends, so that nothing else of the process ever runs there.

Namespaces are per thread, so a worker thread of a pool, or the event loop's, must never enter
one. A mount namespace may only be entered by a thread with a filesystem context (root and
working directory) of its own, which a thread sharing its process's may not have changed
under the rest: the thread takes its own first (``unshare(CLONE_FS)``). The namespaces are
those of a process held by a pidfd, so the process cannot be swapped for another under the
same pid between the check and the entry.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from base import procinfo

T = TypeVar("T")

CLONE_NEWNS = 0x20000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
_CLONE_FS = 0x200

libc = ctypes.CDLL(None, use_errno=True)


def checked(result: int, what: str) -> int:
    """A libc call's result; its errno raised as OSError when it failed."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def in_namespaces(pid: int, nstypes: int, work: Callable[[], T], *, parent: int | None = None) -> T:
    """``work()`` in the namespaces ``nstypes`` (``CLONE_NEW*``) of process ``pid`` (with
    ``parent``: checked to be that process's child once held), on a thread that ends with it;
    its result, or what it raised. Blocking: run it off the event loop."""
    pidfd = os.pidfd_open(pid)
    try:
        if parent is not None and procinfo.parent(pid) != parent:
            raise ProcessLookupError(f"process {pid} is not a child of {parent}")
        _not_the_hosts(pid, nstypes)
        done: list[T] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                if nstypes & CLONE_NEWNS:
                    checked(libc.unshare(_CLONE_FS), "unshare")
                checked(libc.setns(pidfd, nstypes), "setns")
                done.append(work())
            except BaseException as exc:  # noqa: BLE001 - raised in the caller below
                failed.append(exc)

        thread = threading.Thread(target=run, name=f"in-namespaces-of-{pid}")
        thread.start()
        thread.join()
    finally:
        os.close(pidfd)
    if failed:
        raise failed[0]
    return done[0]


_NS_FILES = {CLONE_NEWNS: "mnt", CLONE_NEWUTS: "uts", CLONE_NEWNET: "net"}


def _not_the_hosts(pid: int, nstypes: int) -> None:
    """Refuse a process sharing one of ``nstypes`` with this one: a machine's process that
    ended may have left its pid to a process of the host, and work meant for the machine's
    namespace (a ruleset, a mount) would be done to the host's. Checked while the pidfd holds
    the process: had it ended before, ``setns`` on the pidfd fails."""
    for flag, name in _NS_FILES.items():
        if nstypes & flag:
            theirs, ours = os.stat(f"/proc/{pid}/ns/{name}"), os.stat(f"/proc/self/ns/{name}")
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                raise ProcessLookupError(f"process {pid} is in the host's {name} namespace")
