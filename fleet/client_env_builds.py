"""``FleetClient``'s methods for the environment builds cache (a mixin):
``environments.list``, ``environments.build``, ``environments.delete``."""

from __future__ import annotations

from contracts import gateway_env_builds as geb
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class EnvBuildsClient:
    async def list_environments(self: Calls, host_id: str | None = None) -> geb.EnvironmentList:
        """A host's cached environment builds (None: the platform's own host)."""
        params = new_params(geb.ListEnvironmentsParams, host_id=host_id)
        return await self.call(geb.ENVIRONMENTS_LIST, params)

    async def build_environment(
        self: Calls, instance_id: str, host_id: str | None = None
    ) -> geb.EnvironmentBuilt:
        """Build the instance's environment now; answers when the build is done."""
        params = new_params(geb.BuildEnvironmentParams, instance_id=instance_id, host_id=host_id)
        return await self.call(geb.ENVIRONMENTS_BUILD, params)

    async def delete_environment(
        self: Calls, environment_id: str, host_id: str | None = None
    ) -> geb.EnvironmentDeleted:
        """Remove a cached build (EnvironmentInUse while a machine runs it)."""
        params = new_params(
            geb.DeleteEnvironmentParams, environment_id=environment_id, host_id=host_id
        )
        return await self.call(geb.ENVIRONMENTS_DELETE, params)
