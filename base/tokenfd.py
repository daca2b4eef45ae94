"""A machine's token on a pipe: how the provider hands it to a machine's first process and
how that process hands it to each daemon it starts, never through an environment, an argv or a
file (anything of those the machine's user could read). Standard library only: the supervisor
imports this."""

from __future__ import annotations

import os

#: The descriptor a process started with a token finds it on, and the variable that says so.
TOKEN_FD = 3
TOKEN_FD_VAR = "FLEET_MACHINE_TOKEN_FD"  # noqa: S105 - a variable name
#: docker: the token's file (the machine user's, 0600, alone in a volume of the platform's
#: whose directory is root's), which the container's first process, the supervisor, empties
#: as it reads it, before any other process of the machine exists (``take_token_file``).
TOKEN_FILE_VAR = "FLEET_MACHINE_TOKEN_FILE"  # noqa: S105 - a variable name
#: A container made before its first process was the machine's user starts as root: that
#: process becomes ``RUN_AS_VAR``'s uid (``UID`` or ``UID:GID``) first.
RUN_AS_VAR = "FLEET_RUN_AS"
#: gvisor machines: the supervisor stays root (of gVisor's kernel) and each daemon it starts
#: takes its token as root, then becomes this uid itself: a process of the machine's user
#: never holds the token while it can be read (an exec of a readable program is dumpable
#: until it says otherwise, and this runsc runs no execute-only loader for a user).
DAEMON_RUN_AS_VAR = "FLEET_DAEMON_RUN_AS"
#: gvisor machines: the supervisor (root of gVisor's kernel) runs ``sudo``'s broker on this
#: Unix socket, on a tmpfs of the sandbox's own (daemon/supervision/sudo.py).
SUDO_SOCKET = "/run/fleet-sudo/socket"
SUDO_SOCKET_VAR = "FLEET_SUDO_SOCKET"
#: gvisor machines: the daemon's own log (its sandbox's output file on the host), read-only at
#: this path inside, for ``daemon.log``: its stdout is a host descriptor gVisor cannot reopen.
DAEMON_LOG = "/run/fleet-log/daemon.log"
DAEMON_LOG_VAR = "FLEET_DAEMON_LOG"
#: The execute-only loader the supervisor and the daemon start through
#: (daemon/supervision/nodump.py).
LOADER_VAR = "FLEET_NODUMP_LOADER"
#: That loader's ``--library-path`` where the platform brought its own runtime into a machine
#: of another image (providers/docker/runtime.py): the image's libraries are never the daemon's.
RUNTIME_LIBS_VAR = "FLEET_RUNTIME_LIBS"
_MAX_TOKEN = 4096
#: Beside a gvisor machine's token file: the id of the machine it is (a fork restored from its
#: source's memory image is told its own there before its daemon starts again).
MACHINE_ID_FILE = "machine-id"
#: Beside it too: a word its provider writes anew before each restore of the machine (a resume,
#: a fork), so that its supervisor, parked, sees at once that it was restored
#: (daemon/supervise.py).
RESTORE_MARK_FILE = "restored"


def token_pipe(token: str) -> int:
    """The read end of a pipe holding ``token`` (and nothing more to come), never numbered
    ``TOKEN_FD`` (a dup2 onto itself would keep close-on-exec); the caller passes it on and
    closes it."""
    read, write = os.pipe()
    try:
        os.write(write, token.encode())
    finally:
        os.close(write)
    if read == TOKEN_FD:
        read, old = os.dup(read), read
        os.close(old)
    return read


def read_token(fd: int) -> str:
    """Everything on ``fd`` (a token pipe), which is then closed."""
    chunks = []
    try:
        while chunk := os.read(fd, _MAX_TOKEN):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode().strip()


def read_token_file(path: str) -> str:
    """The token in ``path``: never a link, never a FIFO, at most a few KiB."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.read(fd, _MAX_TOKEN).decode().strip()
    finally:
        os.close(fd)


def take_token_file(path: str) -> str:
    """The token in ``path`` (a regular file, never a link, at most a few KiB), which is left
    empty: read by the machine's own user, it must be gone before any other process of that
    user exists. '' if it was spent already."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        token = os.read(fd, _MAX_TOKEN).decode().strip()
        os.ftruncate(fd, 0)
        os.fsync(fd)
        return token
    finally:
        os.close(fd)
