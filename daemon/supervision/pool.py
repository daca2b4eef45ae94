"""A pooled machine's side of the warm pool (``providers/local/pool.py`` is the other side).

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

A docker pooled machine's supervisor has no socket to its provider (``StdinChannel``): it
says ``up`` on the container's log and reads the identity from its stdin, the container's,
which the provider attaches to from before the container starts until it writes the identity
(``FLEET_POOL_STDIN``); from the supervisor on, the wire is the same. That attach is the
docker pool's lifeline, as the socket is the local pool's: the stdin closing before an identity
came (the provisioner ended, even SIGKILLed: the engine closes the pipe when its client goes)
ends the pooled machine, saying ``supervisor: pool_orphaned``.
"""

from __future__ import annotations

import os
import secrets
import select
import socket
import sys
from collections.abc import Callable

from base.poolwire import (
    HOME_VAR,
    POOL_CLAIMED_LOG,
    POOL_FD_VAR,
    POOL_ORPHANED_LOG,
    POOL_SLOT_VAR,
    POOL_STDIN_VAR,
    POOL_UP_LOG,
    UP,
    PoolClosed,
    PoolOrphaned,
    parse_identity,
    read_line,
)
from daemon.supervision import nodump

__all__ = ["POOL_FD_VAR", "await_identity", "pool_channel", "pool_socket", "relay_claim"]

_MAX_LINE = 4096


def pool_socket(environ: dict[str, str] | os._Environ[str]) -> socket.socket | None:
    """The pool socket named by ``FLEET_POOL_FD`` (removed from ``environ``), or None."""
    fd = environ.pop(POOL_FD_VAR, None)
    if fd is None:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.set_inheritable(False)  # the machine's own processes must never get it
    return sock


def await_identity(environ: os._Environ[str], held: nodump.HeldIdentity) -> bool:
    """In a pooled daemon: import what serving needs, say ``up``, wait for the identity and
    put it in ``environ`` (its token in ``held``). False if this is not a pooled daemon.
    Exits when the pool socket closes first (the supervisor saw its provider go)."""
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
    take_identity(identity, environ, held)
    return True


def take_identity(identity: dict[str, str], environ: dict[str, str] | os._Environ[str],
                  held: nodump.HeldIdentity) -> None:  # fmt: skip
    """The machine id (and home, if it came) into ``environ``; the token into memory only
    (``held``, daemon/supervision/nodump.py)."""
    held.keep_token(identity.pop(nodump.TOKEN_VAR))
    if HOME_VAR in identity:  # the machine's own home, mounted at its own path
        environ["HOME"] = identity[HOME_VAR]
    environ.update(identity)


def _prewarm(environ: os._Environ[str]) -> None:
    """Everything the daemon loads to serve, loaded now, while nobody waits for it; and a
    daemon built and dropped as a claimed one will be built, so that first-use costs are paid
    too (the package version from its metadata, the RPC router's types): about 8 ms less
    between the claim and the ready report. Nothing of it is kept (no lock, no file)."""
    import base.logs  # noqa: F401
    from daemon.compose import compose
    from daemon.settings import DaemonSettings

    home = environ.get("FLEET_HOME") or environ.get("HOME") or "/"
    placeholder = secrets.token_hex(16)  # this daemon never connects: no token of anyone's
    compose(DaemonSettings(nats_url="", machine_id="pooled", machine_token=placeholder, home=home))


class SocketChannel:
    """The provider's end as a local pooled machine's supervisor has it: the pool socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def say_up(self) -> None:
        try:
            self.sock.sendall(UP)
        except OSError:
            raise PoolOrphaned("the pool socket closed before up was said") from None

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


class StdinChannel:
    """A docker pooled machine's: no socket crosses into a container, so the supervisor says
    ``up`` on its log (the container's) and reads the identity from its stdin, which the
    provider holds attached from the container's start and closes once it has written it
    (``StdinOnce``: the pipe closes when it detaches): never an argv, an environment or a
    file. The pipe closing first means the provider is gone (``PoolOrphaned``). The pipe is
    moved off fd 0 (``/dev/null`` there) before the daemon starts: no process of the machine
    ever inherits it."""

    def __init__(self) -> None:
        self.fd = os.dup(0)  # (non-inheritable)
        _devnull_on_stdin()

    def say_up(self) -> None:
        print(POOL_UP_LOG, file=sys.stderr, flush=True)

    def identity(self, daemon: socket.socket) -> bytes | None:
        """The identity line, or None if the daemon ended first; PoolOrphaned if the pipe
        closed first (even mid-line: the attach went away)."""
        buf = b""
        while not buf.endswith(b"\n"):
            readable, _, _ = select.select([self.fd, daemon.fileno()], [], [])
            if daemon.fileno() in readable:
                return None
            chunk = os.read(self.fd, _MAX_LINE - len(buf))
            if not chunk:
                raise PoolOrphaned("the container's stdin closed before an identity came")
            if len(buf) + len(chunk) >= _MAX_LINE:
                raise PoolClosed("the identity line is too long")
            buf += chunk
        print(POOL_CLAIMED_LOG, file=sys.stderr, flush=True)
        return buf[:-1]

    def close(self) -> None:
        os.close(self.fd)


def _devnull_on_stdin() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


Channel = SocketChannel | StdinChannel


def pool_channel(environ: os._Environ[str]) -> Channel | None:
    """The supervisor's way to its provider (removed from ``environ``), or None: not pooled."""
    if environ.pop(POOL_STDIN_VAR, None) is not None:
        return StdinChannel()
    sock = pool_socket(environ)
    return SocketChannel(sock) if sock is not None else None


def relay_claim(provider: Channel, spawn: Callable[[], object], held: nodump.HeldIdentity) -> bool:
    """The supervisor's side: start the daemon (``spawn``) on a socketpair of our own, relay
    its ``up`` to the provider and the provider's identity to it. True once handed over
    (``os.environ`` then has the machine id and ``held`` the token, for the daemons started
    later: a restart, a handover); False if the provider or the daemon went first (the
    machine should end)."""
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
            identity = _relay(provider, ours)
    finally:
        provider.close()
    if identity is None:
        return False
    take_identity(identity, os.environ, held)
    return True


def _relay(provider: Channel, daemon: socket.socket) -> dict[str, str] | None:
    """The daemon's ``up`` to the provider, the provider's identity to the daemon; None if
    either went first (said on the log when it was the provider, or when it sent no identity)."""
    try:
        if read_line(daemon) + b"\n" != UP:
            return None
    except (PoolClosed, OSError):
        return None  # the daemon ended before it was up
    try:
        provider.say_up()
        line = provider.identity(daemon)
        if line is None:
            return None
        identity = parse_identity(line)
        daemon.sendall(line + b"\n")
    except PoolOrphaned:
        print(POOL_ORPHANED_LOG, file=sys.stderr, flush=True)
        return None
    except PoolClosed as exc:  # our own words, never the line's content
        print(f"supervisor: pool_refused reason={str(exc)!r}", file=sys.stderr, flush=True)
        return None
    except OSError:
        return None
    return identity
