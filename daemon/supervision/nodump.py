"""Keeping a machine's token from the machine's own commands.

A machine's commands run as the same user as its supervisor and daemon, in the same pid
namespace, so ``/proc/<pid>/environ``, ``mem``, ``cmdline`` and ``fd/*`` of the daemon would be
theirs to read. The kernel refuses those to a process without CAP_SYS_PTRACE (which a machine
never has) when the target is *non-dumpable*. ``prctl(PR_SET_DUMPABLE, 0)`` at startup leaves
a window (every exec resets it, and a machine can kill its daemon to get a fresh one), so the
provider also starts the supervisor and the daemon through an execute-only copy of the dynamic
loader (``FLEET_NODUMP_LOADER``): an exec of a file its caller cannot read makes the process
non-dumpable from its first instruction.

The token is never in an environment or a file: it reaches the supervisor on a pipe
(``FLEET_MACHINE_TOKEN_FD``, base/tokenfd.py) that it reads before any of the machine's
processes exists, and the supervisor hands it to each daemon it starts, and a daemon to the
code it re-executes into (daemon.selfUpdate), on a pipe of its own. Every process keeps it in
memory only, in the one ``HeldIdentity`` its start makes and hands on (no module state).

Standard library only: the supervisor imports this.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

from base.loader import LIBRARY_FLAGS
from base.tokenfd import (
    DAEMON_RUN_AS_VAR,
    LOADER_VAR as LOADER_VAR,
    MACHINE_ID_FILE,
    RESTORE_MARK_FILE,
    RUN_AS_VAR,
    RUNTIME_LIBS_VAR,
    TOKEN_FD,
    TOKEN_FD_VAR,
    TOKEN_FILE_VAR,
    read_token,
    read_token_file,
    take_token_file,
    token_pipe,
)

TOKEN_VAR = "FLEET_MACHINE_TOKEN"  # noqa: S105 - a variable name
#: A daemon's identity pipe (its read end): where a supervisor that stays root tells it, at a
#: resume, the identity its provider wrote since (a fork's own, or a renewed credential).
IDENTITY_FD = 4
IDENTITY_FD_VAR = "FLEET_IDENTITY_FD"
#: One identity told: ``<machine id> <token>\n``, at most this long (a pipe's atomic write).
IDENTITY_MAX = 4096
_PR_SET_DUMPABLE = 4
#: How a daemon of installed code is run: -P, neither the working directory nor a script's
#: may shadow fleetd's packages; -s, nor the home's user site-packages (a ``.pth`` file there
#: would run the machine's code inside the daemon, token and all). PYTHONPATH still counts.
DAEMON_FLAGS = ("-s", "-P")


def forbid_dumps() -> bool:
    """Make this process non-dumpable (again: an exec resets it); False where prctl fails."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    return False


def python_argv(*args: str) -> list[str]:
    """This interpreter with ``args``, through the execute-only loader where there is one."""
    loader = os.environ.get(LOADER_VAR)
    if loader and os.access(loader, os.X_OK):
        libs = os.environ.get(RUNTIME_LIBS_VAR)
        path = (*LIBRARY_FLAGS, "--library-path", libs) if libs else ()
        return [loader, *path, sys.executable, *args]
    return [sys.executable, *args]


class TokenSpent(RuntimeError):
    """A docker machine's token file was read before: this container was started again by its
    engine, not by the provider (which writes a new token first)."""


def drop_root_for_daemon() -> None:
    """A daemon started as root with ``DAEMON_RUN_AS_VAR`` (a gvisor machine's): its token
    taken, it becomes that uid for good, non-dumpable before and after. Elsewhere: nothing."""
    run_as = os.environ.pop(DAEMON_RUN_AS_VAR, None)
    if not run_as or os.geteuid() != 0:
        return
    uid, _, gid = run_as.partition(":")
    forbid_dumps()
    os.setgroups([])
    os.setgid(int(gid or uid))
    os.setuid(int(uid))  # every capability goes with root
    forbid_dumps()


def _is_machine_id(text: str) -> bool:
    # contracts.ids is imported here, not at the top: it imports secrets (hmac, and with it
    # OpenSSL's _hashlib), and this module is imported before daemon.lean keeps OpenSSL out.
    from contracts.ids import MACHINE_ID_RE

    return MACHINE_ID_RE.fullmatch(text) is not None


def identity_pipe() -> tuple[int, int]:
    """A daemon's identity pipe: the read end (never ``TOKEN_FD`` or ``IDENTITY_FD``: the
    file actions dup2 onto those), and the write end the supervisor keeps, non-blocking."""
    read, write = os.pipe()
    while read in (TOKEN_FD, IDENTITY_FD):
        read, old = os.dup(read), read
        os.close(old)
    os.set_blocking(write, False)
    return read, write


def read_new_identity(fd: int | None) -> tuple[str, str] | None:
    """A daemon's, at a resume: the last identity its supervisor told (machine id, token) since
    the last read; None if none (or nothing well formed) came."""
    if fd is None:
        return None
    data = b""
    while True:
        try:
            chunk = os.read(fd, IDENTITY_MAX)
        except OSError:  # BlockingIOError: all read
            break
        if not chunk:
            break
        data = (data + chunk)[-2 * IDENTITY_MAX :]  # bounded: the last line is what counts
    lines = data.decode("ascii", errors="replace").splitlines()
    machine_id, _, token = (lines[-1] if lines else "").partition(" ")
    if not _is_machine_id(machine_id) or not token or not token.isprintable():
        return None
    return machine_id, token


def close_handed(actions: list[tuple[int, int, int]]) -> None:
    for _, fd, _ in actions:
        os.close(fd)


class HeldIdentity:
    """What this process holds of its machine's identity, in memory only, made once at its
    start and handed to what needs it: the machine's ``token``; the token file a supervisor
    that stays root read (a gvisor machine's), read again at each daemon's start after the
    first; a daemon's identity pipe (``identity_fd``), passed on to the code it re-executes
    into."""

    def __init__(self, *, token: str | None = None, token_file: str | None = None,
                 identity_fd: int | None = None) -> None:  # fmt: skip
        self.token = token
        self._token_file = token_file
        self.identity_fd = identity_fd

    def take_token(self) -> str | None:
        """The token from the descriptor we were given (closed then), else from our
        environment (a daemon an operator runs by hand); out of ``os.environ`` either way,
        kept in memory."""
        raw = os.environ.pop(TOKEN_FD_VAR, None)
        from_env = os.environ.pop(TOKEN_VAR, None)
        if raw is not None:
            self.token = read_token(int(raw))
        elif from_env:
            self.token = from_env
        return self.token

    def take_token_file_and_drop_root(self) -> None:
        """A docker machine's first process is the machine's user: take the token from its
        file, emptying it, before anything of the machine runs (``TokenSpent`` if it is
        empty). One made before that starts as root (with only CAP_SETUID and CAP_SETGID):
        read the token from its root-only file, then become the machine's user for good.
        Elsewhere: nothing."""
        path, run_as = os.environ.pop(TOKEN_FILE_VAR, None), os.environ.pop(RUN_AS_VAR, None)
        if os.geteuid() != 0:
            if path:
                self.token = take_token_file(path) or None
                if self.token is None:
                    raise TokenSpent(f"{path} is empty: the provider's next start brings a token")
            return
        if path:
            self.token = read_token_file(path)
            self._token_file = None if run_as else path
        if run_as:  # ``UID`` or ``UID:GID`` (a devcontainer's remoteUser and its group)
            uid, _, gid = run_as.partition(":")
            os.setgroups([])
            os.setgid(int(gid or uid))
            os.setuid(int(uid))  # every capability goes with root
            forbid_dumps()

    def keep_token(self, token: str) -> None:
        """A token told later (a pooled machine's claim, a renewed credential, a new
        identity): what a selfUpdate and the next daemon are handed."""
        self.token = token

    def reread_identity(self) -> str | None:
        """A supervisor that stays root (a gvisor machine's): the token and the machine id its
        provider wrote last, taken again; the machine id, None if none is written (or
        elsewhere). A fork restored from its source's memory image holds its source's in
        memory: its provider writes the fork's own before restarting its daemon, which then
        speaks as the fork."""
        if self._token_file is None or os.geteuid() != 0:
            return None
        with contextlib.suppress(OSError):
            self.token = read_token_file(self._token_file) or self.token
        try:
            with open(os.path.join(os.path.dirname(self._token_file), MACHINE_ID_FILE)) as f:
                machine_id = f.read(64).strip()
        except OSError:
            return None
        return machine_id if _is_machine_id(machine_id) else None

    def restore_mark(self) -> str:
        """A supervisor that stays root (a gvisor machine's): the restore mark its provider
        wrote last beside the token file (empty if none, or elsewhere)."""
        if self._token_file is None or os.geteuid() != 0:
            return ""
        try:
            with open(os.path.join(os.path.dirname(self._token_file), RESTORE_MARK_FILE)) as f:
                return f.read(64).strip()
        except OSError:
            return ""

    def tell_new_identity(self, fd: int | None) -> bool:
        """A resume's, in a supervisor that stays root: the token and machine id its provider
        wrote last, told to the daemon on its identity pipe ``fd`` if either changed (a fork
        restored from its source's image, a source whose credential was renewed); False if
        nothing was."""
        old = (os.environ.get("FLEET_MACHINE_ID"), self.token)
        machine_id = self.reread_identity()
        if (
            fd is None
            or machine_id is None
            or self.token is None
            or (machine_id, self.token) == old
        ):
            return False
        line = f"{machine_id} {self.token}\n".encode()
        if len(line) > IDENTITY_MAX:
            return False
        os.environ["FLEET_MACHINE_ID"] = machine_id  # the next daemon's too, if this one dies
        try:
            return os.write(fd, line) == len(line)
        except OSError:  # the daemon is gone (its next one reads the files' identity at its start)
            return False

    def take_identity_fd(self) -> int | None:
        """A daemon's: the identity pipe it was given, out of its environment and kept from the
        programs it runs; None if it has none."""
        raw = os.environ.pop(IDENTITY_FD_VAR, None)
        if raw is None or not raw.isdigit():
            return None
        fd = int(raw)
        try:
            os.set_inheritable(fd, False)
            os.set_blocking(fd, False)
        except OSError:
            return None
        self.identity_fd = fd
        return fd

    def token_handed(
        self, env: dict[str, str]
    ) -> tuple[dict[str, str], list[tuple[int, int, int]]]:
        """``env`` and the posix_spawn file actions that give a child our token on its pipe
        (``TOKEN_FD``); the pipe's read end stays open in this process until
        ``close_handed``."""
        env = {k: v for k, v in env.items() if k not in (TOKEN_VAR, TOKEN_FD_VAR)}
        if self.token is None:
            return env, []
        fd = token_pipe(self.token)
        return env | {TOKEN_FD_VAR: str(TOKEN_FD)}, [(os.POSIX_SPAWN_DUP2, fd, TOKEN_FD)]

    def token_for_exec(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` for an exec of this process: our token on an inherited pipe."""
        env = {k: v for k, v in env.items()
               if k not in (TOKEN_VAR, TOKEN_FD_VAR, IDENTITY_FD_VAR)}  # fmt: skip
        if self.identity_fd is not None:
            os.set_inheritable(self.identity_fd, True)
            env[IDENTITY_FD_VAR] = str(self.identity_fd)
        if self.token is None:
            return env
        fd = token_pipe(self.token)
        os.set_inheritable(fd, True)
        return env | {TOKEN_FD_VAR: str(fd)}
