"""``FleetClient``'s methods for an instance's machine limits (a mixin: ``client.py`` is
full): ``instances.setLimits``, ``instances.getLimits``."""

from __future__ import annotations

from contracts import gateway_limits as gl, gateway_rpc as g
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class LimitsClient:
    async def set_limits(
        self: Calls,
        instance_id: str,
        *,
        memory_mb: int | None = None,
        cpus: float | None = None,
        pids: int | None = None,
    ) -> gl.InstanceLimits:
        """The instance's machine limits from now on (each omitted: the platform's default)."""
        params = new_params(gl.SetLimitsParams, instance_id=instance_id, memory_mb=memory_mb,
                            cpus=cpus, pids=pids)  # fmt: skip
        return await self.call(gl.INSTANCES_SET_LIMITS, params)

    async def get_limits(self: Calls, instance_id: str) -> gl.InstanceLimits:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return await self.call(gl.INSTANCES_GET_LIMITS, params)
