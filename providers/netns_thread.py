"""Work done by the host inside a machine's network namespace: a thread of the host's process
enters the namespace (``setns``: a namespace is per thread), does the work, and leaves it.
What it makes there stays the host's: a socket of the namespace (the machine's resolver,
providers/egress_dns.py), or a child process, which starts in the thread's namespace (nft
writing the machine's ruleset, providers/egress.py).

The namespace is opened through ``/proc/<pid>/ns/net`` of a process the provider started, never
by a path inside the machine. Each call has a thread of its own, which ends with it: a thread
that could not get back to the host's namespace is never reused."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(pid: int, work: Callable[[], T]) -> T:
    """``work()`` run in the network namespace of ``pid``; its result, or what it raised
    (OSError if the namespace is gone). Blocks: call it through ``asyncio.to_thread``."""
    done: list[T | BaseException] = []

    def run() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    done.append(work())
                finally:
                    _setns(own)
            finally:
                os.close(target)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            done.append(exc)
        finally:
            os.close(own)

    thread = threading.Thread(target=run, name="netns-work")
    thread.start()
    thread.join()
    got = done[0]
    if isinstance(got, BaseException):
        raise got
    return got
