"""How the daemon learns that a child exited, without a thread per child.

Python 3.11's asyncio reaps each subprocess with a thread of its own, started just *after* the
fork. A command that fills the machine's pids limit before that thread starts (a fork bomb does,
in microseconds) leaves the daemon unable to start it: the spawn raises ``RuntimeError`` although
the command runs, unwatched. A pidfd needs no thread; Python 3.12 uses one by default.
"""

from __future__ import annotations

import os
import sys


def reap_without_threads() -> None:
    """Before the event loop starts: watch children through pidfds where the kernel (and the
    machine's seccomp profile) allow ``pidfd_open``; otherwise keep Python's default."""
    if sys.version_info >= (3, 12):
        return  # already the default where pidfds work
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    import asyncio

    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
