"""The warm pool's wire between a provider and a pooled machine (``daemon/supervision/pool.py`` and
``providers/local/pool.py``): the socket's fd variable, its two messages, and their checks."""

from __future__ import annotations

import json
import socket

#: The fd of the pool socket, in a pooled root's (and then its daemon's) environment.
POOL_FD_VAR = "FLEET_POOL_FD"
#: The pool slot a pooled machine's root was started as (the host finds the root by it).
POOL_SLOT_VAR = "FLEET_POOL_SLOT"
#: docker: set (to 1) when the supervisor takes its identity from its stdin, the container's,
#: which the provider attaches to once (``StdinOnce``) to write it.
POOL_STDIN_VAR = "FLEET_POOL_STDIN"
#: docker: the lines its supervisor prints (the container's log) once its daemon waits, and
#: once it has read its identity.
POOL_UP_LOG = "supervisor: pool_up"
POOL_CLAIMED_LOG = "supervisor: pool_claimed"
#: docker: what its supervisor prints when its stdin closed before an identity came: the
#: provider's attach, held from the container's start, is its lifeline (its provisioner ended).
POOL_ORPHANED_LOG = "supervisor: pool_orphaned"
#: What a claim sets; nothing else may come over the socket.
IDENTITY_VARS = frozenset({"FLEET_MACHINE_ID", "FLEET_MACHINE_TOKEN"})
#: What a claim may add: the machine's home, when the pooled sandbox is given the home the
#: machine already has (a stopped machine's start, a fork's: providers/sandbox/mount.py),
#: mounted at the machine's own path rather than the pool slot's.
HOME_VAR = "FLEET_HOME"
UP = b"up\n"
_MAX_LINE = 4096


class PoolClosed(Exception):
    """No identity came: the other end went away, or sent something else."""


class PoolOrphaned(PoolClosed):
    """The provider's end closed before an identity came: its provisioner is gone."""


def read_line(sock: socket.socket) -> bytes:
    """One ``\\n``-terminated line (without it); PoolClosed at EOF before one came."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(_MAX_LINE - len(buf))
        if not chunk:
            raise PoolOrphaned("the pool socket closed before an identity came")
        if len(buf) + len(chunk) >= _MAX_LINE:
            raise PoolClosed("the line is too long")
        buf += chunk
    return buf[:-1]


def parse_identity(line: bytes) -> dict[str, str]:
    """The identity a claim hands over: exactly the machine id and token, and perhaps its
    home (an absolute path), all strings."""
    try:
        raw = json.loads(line)
    except ValueError:
        raise PoolClosed("the identity is not JSON") from None
    if not isinstance(raw, dict) or set(raw) - {HOME_VAR} != IDENTITY_VARS:
        raise PoolClosed(f"the identity must have exactly {sorted(IDENTITY_VARS)} (and "
                         f"perhaps {HOME_VAR})")  # fmt: skip
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise PoolClosed("the identity's values must be non-empty strings")
    if not raw.get(HOME_VAR, "/").startswith("/"):
        raise PoolClosed(f"the identity's {HOME_VAR} must be an absolute path")
    return {str(k): str(v) for k, v in raw.items()}


def identity_line(machine_id: str, token: str, home: str | None = None) -> bytes:
    """What a claim sends: the identity (``home``: the machine's own, when it has one
    already), one JSON line."""
    identity = {"FLEET_MACHINE_ID": machine_id, "FLEET_MACHINE_TOKEN": token}
    line = json.dumps(identity if home is None else identity | {HOME_VAR: home})
    return line.encode() + b"\n"
