"""``instances.setEnvironment`` / ``instances.getEnvironment``: what the instance's machines
are made from (contracts/gateway_environments.py)."""

from __future__ import annotations

import structlog

from contracts.gateway_environments import (
    Environment,
    InstanceEnvironment,
    SetEnvironmentParams,
    repo_not_found,
)
from contracts.gateway_types import InstanceRef
from services.common.store import Store
from services.common.store_environments import instance_environment, set_instance_environment
from services.gateway.access import Access, Caller

log = structlog.get_logger(__name__)


class EnvironmentOps:
    def __init__(self, store: Store, access: Access) -> None:
        self.store = store
        self.access = access

    async def instances_set_environment(
        self, p: SetEnvironmentParams, c: Caller
    ) -> InstanceEnvironment:
        await self.access.instance_exists(c, p.instance_id)
        env = p.environment
        if env is not None and env.repo is not None:
            env = await self._with_repo_path(p.instance_id, env)
        await set_instance_environment(self.store, p.instance_id, env)
        log.info("instance.environment_set", instance_id=p.instance_id, by=c.token_id,
                 environment=env.describe() if env else None)  # fmt: skip
        return InstanceEnvironment(instance_id=p.instance_id, environment=env)

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

    async def instances_get_environment(self, p: InstanceRef, c: Caller) -> InstanceEnvironment:
        await self.access.instance_exists(c, p.instance_id)
        env = await instance_environment(self.store, p.instance_id)
        return InstanceEnvironment(instance_id=p.instance_id, environment=env)
