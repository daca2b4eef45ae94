"""Who may touch what: the caller of a gateway method, and the records it may reach.

Shared by ``api`` (instances, machines, tokens) and ``ops`` (running machines), so neither
needs the other: neither imports the other, and ops needs no callback into api to reach a
live machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from contracts.errors import Conflict, Forbidden, InvalidParams, MachineStopped
from contracts.models import Machine
from contracts.status import (
    ARCHIVED_OR_ARCHIVING,
    STOPPED_OR_STOPPING,
    TERMINAL,
)
from contracts.validation import local_repo_path
from providers.code_status import CodeVersions
from services.common.stop_start import START_HINT
from services.common.store import Store
from services.gateway.activity import ActivityClock


class Caller(msgspec.Struct, frozen=True):
    """Who is calling: the admin (everything), or a token scoped to one instance."""

    token_id: str
    admin: bool = True
    instance_id: str | None = None

    def may(self, instance_id: str | None) -> bool:
        """May touch this instance (None: the platform scope, admins only)."""
        return self.admin or (instance_id is not None and instance_id == self.instance_id)

    def require(self, instance_id: str | None) -> None:
        if not self.may(instance_id):
            what = "the platform scope" if instance_id is None else f"instance {instance_id}"
            raise Forbidden(f"this token may not access {what}")


class Access:
    """Records looked up on behalf of a caller: Forbidden when they are not theirs."""

    def __init__(self, store: Store, code: CodeVersions) -> None:
        self.store = store
        self.code = code
        self.activity = ActivityClock(store)

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

    async def live_machine(self, c: Caller, machine_id: str, *, active: bool = True) -> Machine:
        """A machine the caller may reach into: any but an archived or a stopped one. Every
        gateway method that needs the machine's daemon comes through here, so a stopped
        machine is refused at once (never a timeout) and the call counts as activity
        (``active=False``: a look that must not keep the machine awake)."""
        machine = await self.machine(c, machine_id)
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
