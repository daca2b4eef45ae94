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
"""

from __future__ import annotations

import os
import secrets
import select
import socket
from collections.abc import Callable

from core.poolwire import POOL_FD_VAR, POOL_SLOT_VAR, UP, PoolClosed, parse_identity, read_line

__all__ = ["POOL_FD_VAR", "await_identity", "pool_socket", "relay_claim"]


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


def relay_claim(provider: socket.socket, spawn: Callable[[], object]) -> bool:
    """The supervisor's side: start the daemon (``spawn``) on a socketpair of our own, relay
    its ``up`` to the provider and the provider's identity to it. True once handed over
    (``os.environ`` then has the identity, for the daemons started later: a restart, a
    handover); False if the provider or the daemon went first (the machine should end)."""
    # The daemon and what it runs get the environment of a cold machine's: no pool slot.
    os.environ.pop(POOL_SLOT_VAR, None)
    ours, theirs = socket.socketpair()
    with provider, ours:
        theirs.set_inheritable(True)
        os.environ[POOL_FD_VAR] = str(theirs.fileno())
        try:
            spawn()
        finally:
            del os.environ[POOL_FD_VAR]
            theirs.close()
        try:
            if read_line(ours) + b"\n" != UP:
                return False
            provider.sendall(UP)
            # Both ends watched: a pooled daemon that dies is seen at once (its machine ends,
            # and the provider replaces it), not at the next claim.
            readable, _, _ = select.select([provider, ours], [], [])
            if ours in readable:
                return False  # the daemon ended (it says nothing else before its identity)
            line = read_line(provider)
            identity = parse_identity(line)
            ours.sendall(line + b"\n")
        except (PoolClosed, OSError):
            return False
    os.environ.update(identity)
    return True
