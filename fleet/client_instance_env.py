"""``FleetClient``'s methods for an instance's environment (a mixin: ``client.py`` is full):
``instances.setEnvironment``, ``instances.getEnvironment``."""

from __future__ import annotations

from contracts import gateway_environments as ge, gateway_rpc as g
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class InstanceEnvironmentClient:
    async def set_environment(
        self: Calls, instance_id: str, environment: ge.Environment | None
    ) -> ge.InstanceEnvironment:
        """What the instance's machines are made from from now on (None: auto-detection)."""
        params = new_params(
            ge.SetEnvironmentParams, instance_id=instance_id, environment=environment
        )
        return await self.call(ge.INSTANCES_SET_ENVIRONMENT, params)

    async def get_environment(self: Calls, instance_id: str) -> ge.InstanceEnvironment:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return await self.call(ge.INSTANCES_GET_ENVIRONMENT, params)
