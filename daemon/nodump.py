"""Keeping a machine's token from the machine's own commands.

A machine's commands run as the same user as its supervisor and daemon, in the same pid
namespace, so ``/proc/<pid>/environ``, ``mem``, ``cmdline`` and ``fd/*`` of the daemon would be
theirs to read. The kernel refuses those to a process without CAP_SYS_PTRACE (which a machine
never has) when the target is *non-dumpable*. ``prctl(PR_SET_DUMPABLE, 0)`` at startup leaves
a window (every exec resets it, and a machine can kill its daemon to get a fresh one), so the
provider also starts the supervisor and the daemon through an execute-only copy of the dynamic
loader (``FLEET_NODUMP_LOADER``): an exec of a file its caller cannot read makes the process
non-dumpable from its first instruction. The token reaches the supervisor on a pipe
(``FLEET_MACHINE_TOKEN_FD``) that it reads before any of the machine's processes exists, so it
is never in the environment of bwrap's init or the container's first process either.

Standard library only: the supervisor imports this.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

LOADER_VAR = "FLEET_NODUMP_LOADER"
TOKEN_FD_VAR = "FLEET_MACHINE_TOKEN_FD"  # noqa: S105 - a variable name
TOKEN_VAR = "FLEET_MACHINE_TOKEN"  # noqa: S105 - a variable name
_PR_SET_DUMPABLE = 4


def forbid_dumps() -> bool:
    """Make this process non-dumpable (again: an exec resets it); False where prctl fails."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    return False


def python_argv(*args: str) -> list[str]:
    """This interpreter with ``args``, through the execute-only loader where there is one."""
    loader = os.environ.get(LOADER_VAR)
    if loader and os.access(loader, os.X_OK):
        return [loader, sys.executable, *args]
    return [sys.executable, *args]


def take_token_fd() -> None:
    """Read the token from the descriptor the provider gave us, close it, and keep the token
    in this process's environment for the daemons it starts (non-dumpable themselves)."""
    raw = os.environ.pop(TOKEN_FD_VAR, None)
    if raw is None:
        return
    fd = int(raw)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    os.environ[TOKEN_VAR] = b"".join(chunks).decode().strip()
