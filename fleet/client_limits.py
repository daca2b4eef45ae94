"""``FleetClient``'s methods for an instance's machine limits and the hosts' capacity (a
mixin: ``client.py`` is full): ``instances.setLimits``, ``instances.getLimits``,
``hosts.list``, ``hosts.drain``."""

from __future__ import annotations

from contracts import gateway_hosts as gh, gateway_limits as gl, gateway_rpc as g
from contracts.jsonrpc import NoParams, new_params
from fleet.client_retry import Calls


class LimitsClient:
    async def set_limits(
        self: Calls,
        instance_id: str,
        *,
        memory_mb: int | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        max_running_machines: int | None = None,
    ) -> gl.InstanceLimits:
        """The instance's machine limits from now on (each omitted: the platform's default;
        ``max_running_machines`` omitted: no limit)."""
        params = new_params(gl.SetLimitsParams, instance_id=instance_id, memory_mb=memory_mb,
                            cpus=cpus, pids=pids,
                            max_running_machines=max_running_machines)  # fmt: skip
        return await self.call(gl.INSTANCES_SET_LIMITS, params)

    async def get_limits(self: Calls, instance_id: str) -> gl.InstanceLimits:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return await self.call(gl.INSTANCES_GET_LIMITS, params)

    async def list_hosts(self: Calls) -> list[gh.HostInfo]:
        """Every host's provisioner: capacity, machines, last heartbeat, state (admin only)."""
        return (await self.call(gh.HOSTS_LIST, NoParams())).hosts

    async def drain_host(
        self: Calls, host_id: str, *, draining: bool = True, rebuild: bool = False
    ) -> gh.DrainResult:
        """Stop new placements on the host (``draining=False``: take machines again);
        ``rebuild``: also rebuild its running machines now, onto other hosts."""
        params = new_params(gh.DrainParams, host_id=host_id, draining=draining, rebuild=rebuild)
        return await self.call(gh.HOSTS_DRAIN, params)
