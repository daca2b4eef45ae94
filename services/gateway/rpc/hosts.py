"""``hosts.list``, ``hosts.drain`` (contracts/gateway/hosts.py): the hosts' provisioners, for
the admin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog

from contracts.errors import FleetError, NotFound
from contracts.gateway.hosts import (
    HOSTS_DRAIN,
    HOSTS_LIST,
    DrainParams,
    DrainResult,
    HostList,
    Rebuilt,
)
from contracts.gateway.types import RefreshFailure
from contracts.models import Machine
from contracts.rpc.jsonrpc import NoParams, handles
from controlplane.hosts import host_infos
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Caller

log = structlog.get_logger(__name__)

#: ``machines.rebuild`` of an instance, as the caller.
Rebuild = Callable[[str, Caller], Awaitable[Machine]]


class HostOps:
    def __init__(self, store: Store, settings: Settings, rebuild: Rebuild) -> None:
        self.store = store
        self.settings = settings
        self.rebuild = rebuild

    @handles(HOSTS_LIST)
    async def hosts_list(self, p: NoParams, c: Caller) -> HostList:
        c.require(None)  # the platform scope: the admin token only
        return HostList(hosts=await host_infos(self.store, self.settings))

    @handles(HOSTS_DRAIN)
    async def hosts_drain(self, p: DrainParams, c: Caller) -> DrainResult:
        c.require(None)
        # First, and read by the host's provisioner at each fetch: the replacements that
        # follow cannot land on this host.
        if not await self.store.hosts.set_draining(p.host_id, p.draining):
            raise NotFound(f"host {p.host_id} has never announced itself")
        log.info("host.drained" if p.draining else "host.undrained", host_id=p.host_id,
                 by=c.token_id)  # fmt: skip
        rebuilt, refused = await self._rebuild_all(p.host_id, c) if p.rebuild else ([], [])
        hosts = await host_infos(self.store, self.settings)
        host = next(h for h in hosts if h.host_id == p.host_id)
        return DrainResult(**msgspec.structs.asdict(host), rebuilt=rebuilt, not_rebuilt=refused)

    async def _rebuild_all(
        self, host_id: str, c: Caller
    ) -> tuple[list[Rebuilt], list[RefreshFailure]]:
        """Rebuild each running machine of the host that is its instance's current one (an
        older one is being archived already), one at a time; a refusal is reported, never
        fatal to the others."""
        rebuilt: list[Rebuilt] = []
        refused: list[RefreshFailure] = []
        for machine_id in sorted((await self.store.hosts.occupancy(host_id)).running):
            machine = await self.store.get_machine(machine_id)
            instance = await self.store.get_instance(machine.instance_id)
            if instance.current_machine_id != machine_id:
                continue
            try:
                new = await self.rebuild(machine.instance_id, c)
            except FleetError as exc:
                refused.append(RefreshFailure(machine_id=machine_id, code=exc.code,
                                              message=exc.message))  # fmt: skip
                continue
            rebuilt.append(Rebuilt(machine_id=machine_id, replaced_by=new.id))
            log.info("host.machine_moved", host_id=host_id, machine_id=machine_id, to=new.id)
        return rebuilt, refused
