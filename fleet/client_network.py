"""``FleetClient``'s methods for an instance's egress policy (a mixin: ``client.py`` is full):
``instances.setNetworkPolicy``, ``instances.getNetworkPolicy``."""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts import gateway_network as gn, gateway_rpc as g
from contracts.jsonrpc import new_params
from contracts.rpc_params import invalid_params
from fleet.client_retry import Calls


class NetworkClient:
    async def set_network_policy(
        self: Calls,
        instance_id: str,
        *,
        default: Literal["allow", "deny"] = "allow",
        allow: list[str] | None = None,
        deny: list[str] | None = None,
    ) -> gn.NetworkPolicyResult:
        """Where the instance's machines may connect from now on (running ones too)."""
        try:
            egress = gn.EgressPolicy(default=default, allow=allow or [], deny=deny or [])
        except ValueError as exc:  # refused here as the gateway would: naming the entry
            raise invalid_params(msgspec.ValidationError(f"{exc} - at `$.egress`")) from None
        params = new_params(gn.SetNetworkPolicyParams, instance_id=instance_id, egress=egress)
        return await self.call(gn.INSTANCES_SET_NETWORK_POLICY, params)

    async def get_network_policy(self: Calls, instance_id: str) -> gn.NetworkPolicyResult:
        params = new_params(g.InstanceRef, instance_id=instance_id)
        return await self.call(gn.INSTANCES_GET_NETWORK_POLICY, params)
