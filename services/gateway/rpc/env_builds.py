"""``environments.list|build|delete``: a host's environment builds cache, carried out by that
host's provisioner (contracts/gateway/env_builds.py). Listing and removing act on the whole
host's cache (the admin only); building acts on one instance's environment."""

from __future__ import annotations

import structlog

from contracts.gateway import env_builds as geb
from contracts.gateway.env_builds import ENVIRONMENTS_BUILD, ENVIRONMENTS_DELETE, ENVIRONMENTS_LIST
from contracts.rpc.jsonrpc import handles
from services.gateway.auth import Access, Caller
from services.gateway.rpc.host_control import HostCalls

log = structlog.get_logger(__name__)


class EnvBuildOps:
    def __init__(self, access: Access, hosts: HostCalls) -> None:
        self.access = access
        self.hosts = hosts

    @handles(ENVIRONMENTS_LIST)
    async def environments_list(
        self, p: geb.ListEnvironmentsParams, c: Caller
    ) -> geb.EnvironmentList:
        c.require(None)
        return await self.hosts(geb.HOST_LIST_ENVIRONMENTS, p, host=p.host_id)

    @handles(ENVIRONMENTS_BUILD)
    async def environments_build(
        self, p: geb.BuildEnvironmentParams, c: Caller
    ) -> geb.EnvironmentBuilt:
        await self.access.instance_exists(c, p.instance_id)
        if p.host_id is not None:
            c.require(None)  # a host of the caller's choosing is the admin's to name
        built = await self.hosts(geb.HOST_BUILD_ENVIRONMENT, p, host=p.host_id)
        log.info("environment.build_asked", instance_id=p.instance_id, by=c.token_id,
                 build=built.id)  # fmt: skip
        return built

    @handles(ENVIRONMENTS_DELETE)
    async def environments_delete(
        self, p: geb.DeleteEnvironmentParams, c: Caller
    ) -> geb.EnvironmentDeleted:
        c.require(None)
        gone = await self.hosts(geb.HOST_DELETE_ENVIRONMENT, p, host=p.host_id)
        log.info("environment.deleted", build=gone.id, by=c.token_id)
        return gone
