"""People and what they may do: platform and instance roles, token scopes, and the one table of
the scope each gateway method (and each HTTP route into a machine) needs.

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

_R, _X, _A = MACHINES_READ, MACHINES_EXEC, ADMIN
#: The scope each gateway method needs, on the instance its params name (or on the platform when
#: they name none). ``tests/unit/test_people.py`` checks every method has one.
METHOD_SCOPES: Final[dict[str, str]] = {
    "instances.create": _X, "instances.get": _R, "instances.list": _R,
    "env.set": ENV_WRITE, "env.unset": ENV_WRITE, "env.list": ENV_READ,
    "repos.add": ENV_WRITE, "repos.remove": ENV_WRITE, "repos.list": _R,
    "machines.create": _X, "machines.get": _R, "machines.list": _R, "machines.archive": _X,
    "machines.rebuild": _X, "machines.exec": _X, "machines.writeFile": FILES_WRITE,
    "machines.refreshEnv": _X, "machines.refreshCode": _X, "machines.process.start": _X,
    "machines.process.list": _R, "machines.process.kill": _X, "machines.process.logs": _R,
    "cron.set": _X, "cron.list": _R, "tokens.create": _R, "tokens.list": _R,
    "tokens.revoke": _R, "rpc.discover": _R, "events.ticket": _R,
    "machines.execStream": _X, "machines.daemonLog": _R, "machines.restart": _X,
    "machines.ports": PORTS, "machines.previewTicket": PORTS,
    "instances.setSshKeys": ENV_WRITE, "instances.setLimits": _A, "instances.getLimits": _R,
    "hosts.list": _A, "hosts.drain": _A, "machines.stop": _X, "machines.start": _X,
    "machines.pause": _X, "machines.resume": _X,
    "instances.setAutoStop": _A, "instances.getAutoStop": _R,
    "instances.setRuntime": _X, "instances.getRuntime": _R,
    "codemode.run": _X, "codemode.cancel": _X, "codemode.list": _X, "codemode.describe": _X,
    "codemode.bridges.set": ENV_WRITE, "codemode.bridges.list": ENV_READ,
    "codemode.bridges.remove": ENV_WRITE,
    "sessions.open": _X, "sessions.list": _X, "sessions.resize": _X, "sessions.close": _X,
    "machines.readFile": FILES_READ, "machines.listDir": FILES_READ, "machines.stat": FILES_READ,
    "machines.removeFile": FILES_WRITE,
    "users.create": _A, "users.list": _A, "users.setRole": _A, "users.disable": _A,
    "users.enable": _A,
    "instances.setMember": _A, "instances.members": _R,
    "instances.setEnvironment": _X, "instances.getEnvironment": _R,
    # The builds cache is the host's, shared by every instance: only its build is the caller's.
    "environments.list": _A, "environments.build": _X, "environments.delete": _A,
    "instances.setNetworkPolicy": _A, "instances.getNetworkPolicy": _R,
    "machines.fork": _X, "machines.snapshot": _X, "snapshots.list": _R, "snapshots.delete": _X,
    # Who may read the audit log (admins and auditors) is audit_log.may_read's to say.
    "audit.list": _R,
    # Running code in a kernel is running a command; what a context holds is what it ran.
    "machines.code.run": _X, "machines.code.createContext": _X,
    "machines.code.listContexts": _X, "machines.code.restartContext": _X,
    "machines.code.deleteContext": _X, "machines.code.interrupt": _X,
    # A secret is a credential the platform uses on the instance's behalf: its owner's to give.
    "secrets.set": _A, "secrets.delete": _A, "secrets.list": ENV_READ,
}  # fmt: skip


def route_scope(method: str, path: str) -> str | None:
    """The scope an HTTP route needs (None: its JSON-RPC methods give theirs): a file's GET
    reads, any other verb on it writes; a tunnel is a port; the event stream is a read; any
    other way into a machine (a session's attach: a terminal) runs commands; codemode's stream
    and MCP run code, as ``codemode.run`` does (each MCP tool narrows it to its method's)."""
    if path == "/events":
        return MACHINES_READ
    if path.startswith("/codemode/") or path == "/mcp":
        return METHOD_SCOPES["codemode.run"]
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
