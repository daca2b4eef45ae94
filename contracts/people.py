"""People and what they may do: platform and instance roles, token scopes, and the scope each HTTP
route into a machine needs (a gateway method's is on its ``MethodSpec``: ``contracts.gateway.rpc``
``METHOD_SCOPES`` is their view).

A caller holds a set of scopes on each instance (and on the platform, for what belongs to no
instance). A role is a set of scopes; a token's scopes narrow its user's, never widen them.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

PlatformRole = Literal["admin", "member", "auditor"]
InstanceRole = Literal["owner", "developer", "viewer"]
PLATFORM_ROLES: Final = ("admin", "member", "auditor")
INSTANCE_ROLES: Final = ("owner", "developer", "viewer")

MACHINES_READ: Final = "machines:read"
MACHINES_EXEC: Final = "machines:exec"
FILES_READ: Final = "files:read"
FILES_WRITE: Final = "files:write"
PORTS: Final = "ports"
ENV_READ: Final = "env:read"
ENV_WRITE: Final = "env:write"
ADMIN: Final = "admin"
Scope = Literal[
    "machines:read", "machines:exec", "files:read", "files:write", "ports", "env:read",
    "env:write", "admin",
]  # fmt: skip
ALL_SCOPES: Final = frozenset(
    {MACHINES_READ, MACHINES_EXEC, FILES_READ, FILES_WRITE, PORTS, ENV_READ, ENV_WRITE, ADMIN}
)
#: What a viewer sees: machines, their statuses, events and logs; nothing else.
READ_ONLY: Final = frozenset({MACHINES_READ})

#: The scopes each instance role holds on its instance (``admin`` there: its members, tokens and
#: settings).
INSTANCE_ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "owner": ALL_SCOPES,
    "developer": ALL_SCOPES - {ADMIN},
    "viewer": READ_ONLY,
}

#: What a platform role holds on the platform itself (an admin: everything): a member may make
#: instances (and owns those it makes); an auditor looks.
PLATFORM_ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "member": frozenset({MACHINES_EXEC}),
    "auditor": READ_ONLY,
}


def route_scope(method: str, path: str) -> str | None:
    """The scope an HTTP route needs (None: its JSON-RPC methods give theirs): a file's GET
    reads, any other verb on it writes; a tunnel is a port; the event stream is a read; any
    other way into a machine (a session's attach: a terminal) runs commands; codemode's stream
    and MCP run code, as ``codemode.run`` does (each MCP tool narrows it to its method's)."""
    if path == "/events":
        return MACHINES_READ
    if path.startswith("/codemode/") or path == "/mcp":
        return MACHINES_EXEC
    if not path.startswith("/machines/"):
        return None
    kind = path.split("/")[3] if path.count("/") > 2 else ""
    if kind == "files":
        return FILES_READ if method in ("GET", "HEAD") else FILES_WRITE
    return PORTS if kind == "tunnel" else MACHINES_EXEC


class CallersChanged(msgspec.Struct, frozen=True):
    """The notice on ``subjects.CALLERS_CHANGED``: the gateway process ``replica`` (a random id
    of each process) wrote a change to what a caller may do. It names no user or token: a
    replica forgets every caller it keeps, and its own notice, which comes back to it, is
    ignored."""

    replica: str
