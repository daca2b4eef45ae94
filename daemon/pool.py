"""A pooled machine's side of the warm pool (``providers/local_pool.py`` is the other side).

A pooled machine is started before anyone asks for it: its supervisor and daemon run, with
their imports done, but with no machine id, no token and no NATS connection. The provider
holds one end of a socketpair; the supervisor gets the other as the fd named by
``FLEET_POOL_FD`` and relays over a socketpair of its own to the daemon:

    daemon -> supervisor -> provider   ``up\\n``   (imports done, waiting)
    provider -> supervisor -> daemon   one JSON line: the identity (machine id and token)

The identity goes over a socket, never into an environment or an argv, so nothing of it is in
``/proc/<pid>/environ`` or ``cmdline`` of the machine's root. The provider closes its end
once it has sent the identity: nothing of the pool stays reachable from the machine. An end
closed before the identity came (the provisioner went away) ends the pooled machine.

A docker pooled machine's supervisor has no socket to its provider (``FileChannel``): it
says ``up`` on the container's log and takes the identity from a file in the container's
tmpfs (``FLEET_POOL_FILE``); from the supervisor on, the wire is the same.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from core.poolwire import (
    POOL_FD_VAR,
    POOL_FILE_VAR,
    POOL_SLOT_VAR,
    POOL_UP_LOG,
    UP,
    PoolClosed,
    parse_identity,
    read_line,
)

__all__ = ["POOL_FD_VAR", "await_identity", "pool_channel", "pool_socket", "relay_claim"]

#: How often a docker pooled machine's supervisor looks for its identity file (a claim waits
#: for it at most this long; the daemon socket is watched meanwhile).
_FILE_POLL_S = 0.005


def pool_socket(environ: dict[str, str] | os._Environ[str]) -> socket.socket | None:
    """The pool socket named by ``FLEET_POOL_FD`` (removed from ``environ``), or None."""
    fd = environ.pop(POOL_FD_VAR, None)
    if fd is None:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.set_inheritable(False)  # the machine's own processes must never get it
    return sock


def await_identity(environ: os._Environ[str]) -> bool:
    """In a pooled daemon: import what serving needs, say ``up``, wait for the identity and
    put it in ``environ``. False if this is not a pooled daemon. Exits when the pool socket
    closes first (the supervisor saw its provider go)."""
    sock = pool_socket(environ)
    if sock is None:
        return False
    _prewarm(environ)
    with sock:
        try:
            sock.sendall(UP)
            identity = parse_identity(read_line(sock))
        except (PoolClosed, OSError):
            raise SystemExit(0) from None
    environ.update(identity)
    return True


def _prewarm(environ: os._Environ[str]) -> None:
    """Everything the daemon loads to serve, loaded now, while nobody waits for it; and a
    daemon built and dropped as a claimed one will be built, so that first-use costs are paid
    too (the package version from its metadata, the RPC router's types): about 8 ms less
    between the claim and the ready report. Nothing of it is kept (no lock, no file)."""
    import core.logs  # noqa: F401
    from daemon.server import Daemon
    from daemon.settings import DaemonSettings

    home = environ.get("FLEET_HOME") or environ.get("HOME") or "/"
    placeholder = secrets.token_hex(16)  # this daemon never connects: no token of anyone's
    Daemon(DaemonSettings(nats_url="", machine_id="pooled", machine_token=placeholder, home=home))


class SocketChannel:
    """The provider's end as a local pooled machine's supervisor has it: the pool socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def say_up(self) -> None:
        self.sock.sendall(UP)

    def identity(self, daemon: socket.socket) -> bytes | None:
        """The identity line, or None if the daemon ended first."""
        # Both ends watched: a pooled daemon that dies is seen at once (its machine ends,
        # and the provider replaces it), not at the next claim.
        readable, _, _ = select.select([self.sock, daemon], [], [])
        if daemon in readable:
            return None  # the daemon ended (it says nothing else before its identity)
        return read_line(self.sock)

    def close(self) -> None:
        self.sock.close()


class FileChannel:
    """A docker pooled machine's: no socket crosses into a container, so the supervisor says
    ``up`` on its log (the container's) and polls for the identity in a file of the
    container's tmpfs, which the provider writes through ``docker exec``'s stdin (never an
    argv or an environment). The file is read and deleted before the daemon gets it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def say_up(self) -> None:
        (self.path.parent / "up").touch()  # removed with the identity: "still pooled"
        print(POOL_UP_LOG, file=sys.stderr, flush=True)

    def identity(self, daemon: socket.socket) -> bytes | None:
        while True:
            readable, _, _ = select.select([daemon], [], [], _FILE_POLL_S)
            if readable:
                return None
            try:
                line = self.path.read_bytes()
            except FileNotFoundError:
                continue
            shutil.rmtree(self.path.parent, ignore_errors=True)
            return line.rstrip(b"\n")

    def close(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


Channel = SocketChannel | FileChannel


def pool_channel(environ: os._Environ[str]) -> Channel | None:
    """The supervisor's way to its provider (removed from ``environ``), or None: not pooled."""
    path = environ.pop(POOL_FILE_VAR, None)
    if path is not None:
        return FileChannel(Path(path))
    sock = pool_socket(environ)
    return SocketChannel(sock) if sock is not None else None


def relay_claim(provider: Channel, spawn: Callable[[], object]) -> bool:
    """The supervisor's side: start the daemon (``spawn``) on a socketpair of our own, relay
    its ``up`` to the provider and the provider's identity to it. True once handed over
    (``os.environ`` then has the identity, for the daemons started later: a restart, a
    handover); False if the provider or the daemon went first (the machine should end)."""
    # The daemon and what it runs get the environment of a cold machine's: no pool slot.
    os.environ.pop(POOL_SLOT_VAR, None)
    ours, theirs = socket.socketpair()
    try:
        with ours:
            theirs.set_inheritable(True)
            os.environ[POOL_FD_VAR] = str(theirs.fileno())
            try:
                spawn()
            finally:
                del os.environ[POOL_FD_VAR]
                theirs.close()
            if read_line(ours) + b"\n" != UP:
                return False
            provider.say_up()
            line = provider.identity(ours)
            if line is None:
                return False
            identity = parse_identity(line)
            ours.sendall(line + b"\n")
    except (PoolClosed, OSError):
        return False
    finally:
        provider.close()
    os.environ.update(identity)
    return True
