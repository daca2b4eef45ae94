"""``hosts.list``, ``hosts.drain`` (contracts/gateway_hosts.py): the hosts' provisioners, for
the admin."""

from __future__ import annotations

import structlog

from contracts.errors import NotFound
from contracts.gateway_hosts import DrainParams, HostInfo, HostList
from contracts.jsonrpc import NoParams
from services.common.hosts import host_infos
from services.common.settings import Settings
from services.common.store import Store
from services.gateway.access import Caller

log = structlog.get_logger(__name__)


class HostOps:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def hosts_list(self, p: NoParams, c: Caller) -> HostList:
        c.require(None)  # the platform scope: the admin token only
        return HostList(hosts=await host_infos(self.store, self.settings))

    async def hosts_drain(self, p: DrainParams, c: Caller) -> HostInfo:
        c.require(None)
        if not await self.store.hosts.set_draining(p.host_id, p.draining):
            raise NotFound(f"host {p.host_id} has never announced itself")
        log.info("host.drained" if p.draining else "host.undrained", host_id=p.host_id,
                 by=c.token_id)  # fmt: skip
        hosts = await host_infos(self.store, self.settings)
        return next(h for h in hosts if h.host_id == p.host_id)
