"""``instances.setEnvironment`` / ``instances.getEnvironment``: what the instance's machines
are made from (contracts/gateway/environments.py).

The gateway reaches no repo: a devcontainer environment's file is checked when it is set by a
provisioner of the platform's host (``host.checkEnvironment``, on a checkout of the repo), which
answers its refused properties (``EnvironmentRefused``) and a file it cannot use
(``EnvironmentInvalid``) as a machine's resolution would. What it cannot look at now (a repo it
cannot fetch or that has credentials, a file not pushed yet, no provisioner answering in time)
is stored unchecked: the machine's resolution checks it then.
"""

from __future__ import annotations

import structlog

from contracts.errors import HostUnavailable, ProviderError
from contracts.gateway import env_builds as geb
from contracts.gateway.environments import (
    INSTANCES_GET_ENVIRONMENT,
    INSTANCES_SET_ENVIRONMENT,
    Environment,
    InstanceEnvironment,
    SetEnvironmentParams,
    repo_not_found,
)
from contracts.gateway.types import InstanceRef
from contracts.rpc.jsonrpc import handles
from controlplane.store import Store
from services.gateway.auth import Access, Caller
from services.gateway.rpc.host_control import HostCalls

log = structlog.get_logger(__name__)


class EnvironmentOps:
    def __init__(self, store: Store, access: Access, hosts: HostCalls) -> None:
        self.store = store
        self.access = access
        self.hosts = hosts

    @handles(INSTANCES_SET_ENVIRONMENT)
    async def instances_set_environment(
        self, p: SetEnvironmentParams, c: Caller
    ) -> InstanceEnvironment:
        await self.access.instance_exists(c, p.instance_id)
        env = p.environment
        if env is not None and env.repo is not None:
            env = await self._with_repo_path(p.instance_id, env)
        if env is not None and env.devcontainer is not None:
            await self._check(p.instance_id, env)
        await self.store.environments.set_of_instance(p.instance_id, env)
        log.info("instance.environment_set", instance_id=p.instance_id, by=c.token_id,
                 environment=env.describe() if env else None)  # fmt: skip
        return InstanceEnvironment(instance_id=p.instance_id, environment=env)

    async def _check(self, instance_id: str, env: Environment) -> None:
        """Raises what the host's check raises (EnvironmentRefused, EnvironmentInvalid)."""
        params = geb.CheckEnvironmentParams(instance_id=instance_id, environment=env)
        try:
            got = await self.hosts(geb.HOST_CHECK_ENVIRONMENT, params)
        except (HostUnavailable, ProviderError) as exc:
            log.warning("instance.environment_unchecked", instance_id=instance_id,
                        error=exc.message)  # fmt: skip
            return
        if got.path is None:
            log.info("instance.environment_unchecked", instance_id=instance_id,
                     why=got.skipped)  # fmt: skip

    async def _with_repo_path(self, instance_id: str, env: Environment) -> Environment:
        """``env`` naming its repo by checkout path (it may have been given by URL); an
        InvalidParams naming the field if the instance has no such repo."""
        repos = await self.store.list_repos(instance_id)
        found = next((r for r in repos if env.repo in (r.path, r.url)), None)
        if found is None:
            raise repo_not_found(env, [r.path for r in repos])
        if env.dockerfile is not None:
            env.dockerfile.repo = found.path
        elif env.devcontainer is not None:
            env.devcontainer.repo = found.path
        return env

    @handles(INSTANCES_GET_ENVIRONMENT)
    async def instances_get_environment(self, p: InstanceRef, c: Caller) -> InstanceEnvironment:
        await self.access.instance_exists(c, p.instance_id)
        env = await self.store.environments.of_instance(p.instance_id)
        return InstanceEnvironment(instance_id=p.instance_id, environment=env)
