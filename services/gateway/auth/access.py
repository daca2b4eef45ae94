"""Who may touch what: the caller of a gateway method, and the records it may reach.

Shared by ``api`` (instances, machines, tokens) and ``ops`` (running machines), so neither
needs the other: neither imports the other, and ops needs no callback into api to reach a
live machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec

from contracts.bus.events import WakeBy
from contracts.errors import Conflict, Forbidden, InvalidParams, MachineStopped
from contracts.gateway.rpc import METHOD_SCOPES
from contracts.models import Machine
from contracts.people import (
    ADMIN,
    ALL_SCOPES,
    INSTANCE_ROLE_SCOPES,
    PLATFORM_ROLE_SCOPES,
    READ_ONLY,
)
from contracts.rpc.jsonrpc import Handler, Router
from contracts.status import (
    ARCHIVED_OR_ARCHIVING,
    PAUSE_STATES,
    STOPPED_OR_STOPPING,
    TERMINAL,
)
from contracts.validation import local_repo_path
from controlplane.calls.daemon_client import OnOutput
from controlplane.machines.status_transitions import RESUME_HINT, START_HINT
from controlplane.policy import CodeVersions
from controlplane.store import Store
from services.gateway.auth.activity import ActivityClock


@dataclass(frozen=True)
class Origin:
    """Where the HTTP request a call came in came from: what the audit log's entries name."""

    client_address: str | None
    user_agent: str | None


class Caller(msgspec.Struct, frozen=True):
    """Who is calling, and the one place that decides what they may do: the operator's admin
    token (break-glass: everything), a signed-in user (by platform role and instance roles), or
    a token (its scopes and instances, within its user's roles). ``acting`` is the scope the
    call under way needs (its spec's ``scope``: ``contracts.gateway.rpc.METHOD_SCOPES``;
    ``route_scope``), set before any
    handler runs; every check of a record against the caller (``require``, ``may``) asks it."""

    #: The token or sign-in session (``ws-...``) the call came with: what revocation cuts.
    token_id: str
    admin: bool = True
    #: The caller's one instance, when it has exactly one (a token made for one instance).
    instance_id: str | None = None
    #: The person behind the call; None for the admin token and for tokens it made.
    user_id: str | None = None
    #: The user's platform role (None: not a user).
    role: str | None = None
    #: The user's instance roles: instance id -> role.
    roles: dict[str, str] = msgspec.field(default_factory=dict)
    #: A token's scopes (None: not narrowed by a token).
    scopes: frozenset[str] | None = None
    #: A token's instances (None: not narrowed; ``instance_id`` alone narrows to it).
    instance_ids: frozenset[str] | None = None
    acting: str = ADMIN
    #: Where a streamed call's output goes as it comes (``POST /rpc/stream``: the stream's
    #: parts, every one before the answer); None for a plain call, answered once.
    output: OnOutput | None = None
    #: The method whose budget the route that started the call spent already (a stream must
    #: be refused before its answer begins): the call's own check does not spend it again.
    prepaid: str | None = None
    #: Where the request that made the call came from (None: not from an HTTP request).
    origin: Origin | None = None

    def held(self, instance_id: str | None) -> frozenset[str]:
        """The scopes the caller holds on this instance (None: on the platform)."""
        if self.admin:
            return ALL_SCOPES
        base = self._role_scopes(instance_id)
        reach = self.instance_ids
        if reach is None and self.instance_id is not None:
            reach = frozenset({self.instance_id})
        if reach is not None and instance_id not in reach:
            return frozenset()
        return base if self.scopes is None else base & self.scopes

    def _role_scopes(self, instance_id: str | None) -> frozenset[str]:
        if self.user_id is None:  # a token of the admin's: its scopes and instances bound it
            bound = self.scopes is not None or self.instance_id is not None
            return ALL_SCOPES if instance_id is not None and bound else frozenset()
        if self.role == "admin":
            return ALL_SCOPES
        if instance_id is None:  # members may make instances; auditors look
            return PLATFORM_ROLE_SCOPES.get(self.role or "", frozenset())
        own = INSTANCE_ROLE_SCOPES.get(self.roles.get(instance_id, ""), frozenset())
        return own | READ_ONLY if self.role == "auditor" else own

    def may(self, instance_id: str | None, scope: str | None = None) -> bool:
        """May do ``scope`` (by default what the call under way needs) on this instance."""
        return (scope or self.acting) in self.held(instance_id)

    def require(self, instance_id: str | None, scope: str | None = None) -> None:
        scope = scope or self.acting
        if not self.may(instance_id, scope):
            what = "the platform" if instance_id is None else f"instance {instance_id}"
            raise Forbidden(f"this caller may not use {scope} on {what}",
                            data={"scope": scope, "instanceId": instance_id})  # fmt: skip

    def doing(self, scope: str) -> Caller:
        """This caller, for a call that needs ``scope``."""
        return msgspec.structs.replace(self, acting=scope)

    def coming_from(self, origin: Origin) -> Caller:
        """This caller, for a call of a request that came from ``origin``."""
        return msgspec.structs.replace(self, origin=origin)

    def streaming(self, output: OnOutput, prepaid: str) -> Caller:
        """This caller, for a streamed call of ``prepaid`` (its budget spent by its route)
        whose output goes to ``output``."""
        return msgspec.structs.replace(self, output=output, prepaid=prepaid)


class Reach(NamedTuple):
    """What keeping something open needs of its caller (an event stream, a terminal, a
    transfer, a tunnel, a preview): ``scope`` on ``instance_id`` (None: on the platform, which
    with ``ADMIN`` is an admin's). Asked when it opens, and again of the caller as the store has
    it now by every revocation round, so a removed or demoted member's is cut."""

    instance_id: str | None
    scope: str

    def allows(self, caller: Caller | None) -> bool:
        return caller is not None and caller.may(self.instance_id, self.scope)


#: What only an admin holds: every machine's events.
EVERYWHERE = Reach(None, ADMIN)


def default_instance(c: Caller) -> str | None:
    """The instance a call that names none is about: every one for an admin (None), the one
    of a caller bound to one; a caller who may reach several must name it."""
    if c.admin:
        return None
    if c.instance_id is not None:
        return c.instance_id
    raise InvalidParams("name an instance (instanceId): this caller may reach several",
                        field="$.instanceId")  # fmt: skip


def scoped(router: Router[Caller]) -> Router[Caller]:
    """The same routes, each handler given its caller ``doing`` the method's scope."""
    out = Router[Caller]()
    for name, route in router.routes.items():
        out.register(route.spec, _doing(route.handler, METHOD_SCOPES[name]))
    return out


def _doing(handler: Handler[Any, Any, Caller], scope: str) -> Handler[Any, Any, Caller]:
    async def call(params: Any, c: Caller) -> Any:
        return await handler(params, c.doing(scope))

    return call


class Wake(Protocol):
    """What ``live_machine`` asks of ``services.gateway.rpc.wake.Waker``."""

    enabled: bool

    async def needed(self, machine: Machine) -> bool: ...
    async def kick(self, machine: Machine, by: WakeBy) -> Machine: ...
    async def wake(self, machine: Machine, by: WakeBy,
                   within_s: float | None = None) -> Machine: ...  # fmt: skip


class Access:
    """Records looked up on behalf of a caller: Forbidden when they are not theirs."""

    def __init__(
        self, store: Store, code: CodeVersions, activity_write_s: float = 1.0,
        waker: Wake | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.code = code
        self.activity = ActivityClock(store, activity_write_s)
        #: Wakes a paused or stopped machine for a call that needs it (set by the gateway).
        self.waker = waker

    async def versioned(self, machine: Machine) -> Machine:
        """``codeStatus`` from git ancestry; ``updateAvailable``: behind, on a live machine."""
        machine.code_status = await self.code.status(machine.daemon_git_sha)
        machine.update_available = (
            machine.code_status == "behind" and machine.status not in TERMINAL
        )
        return machine

    async def machine(self, c: Caller, machine_id: str) -> Machine:
        machine = await self.store.get_machine(machine_id)
        c.require(machine.instance_id)
        return await self.versioned(machine)

    async def live_machine(self, c: Caller, machine_id: str, *, active: bool = True,
                           wake: WakeBy | None = None, wait: bool = True) -> Machine:  # fmt: skip
        """A machine the caller may reach into: any but an archived or a stopped one. Every
        gateway method that needs the machine's daemon comes through here, so a stopped
        machine is refused at once (never a timeout) and the call counts as activity
        (``active=False``: a look that must not keep the machine awake).

        ``wake``: what the call is (``contracts.bus.events.WakeBy``); with wake on access on, a
        paused or stopped machine is resumed or started first and the call waits until it
        answers (``wait=False``: it is asked to, and the call goes on at once)."""
        machine = await self.machine(c, machine_id)
        waker = self.waker
        if wake and waker and waker.enabled and await waker.needed(machine):
            if not wait:
                return await waker.kick(machine, wake)
            machine = await waker.wake(machine, wake)
        # A failed machine still answers (that is when you want to look inside); archived is gone.
        if machine.status in ARCHIVED_OR_ARCHIVING:
            raise Conflict(
                f"machine {machine_id} is {machine.status.value}",
                data={"status": machine.status.value},
            )
        if machine.status in STOPPED_OR_STOPPING:
            hint = START_HINT.format(machine_id=machine_id)
            raise MachineStopped(
                f"machine {machine_id} is {machine.status.value}; {hint}",
                data={"status": machine.status.value, "hint": hint},
            )
        if machine.status in PAUSE_STATES:
            raise Conflict(
                f"machine {machine_id} is {machine.status.value}; {RESUME_HINT}",
                data={"status": machine.status.value, "hint": RESUME_HINT},
            )
        if active:
            await self.activity.record(machine_id)
        return machine

    async def instance_exists(self, c: Caller, instance_id: str | None) -> None:
        """The caller may touch this scope, and (unless it is the platform) it exists."""
        c.require(instance_id)
        if instance_id is not None:
            await self.store.get_instance(instance_id)


def check_local_repo(url: str, c: Caller, data_dir: Path) -> None:
    """A ``file://`` URL or absolute path makes git read the host's file system: only an admin
    may add one, and never into fleetd's data dir (machine homes, keys, the stores)."""
    path = local_repo_path(url)
    if path is None:
        return
    if not c.admin:
        raise Forbidden("only an admin token may add a file:// or local-path repository")
    real, data = Path(os.path.realpath(path)), Path(os.path.realpath(data_dir))
    if real == data or data in real.parents:
        raise InvalidParams(
            f"field `url`: {path} is inside fleetd's data dir, which no repository may read",
            field="$.url",
        )
