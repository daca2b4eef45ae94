"""``instances.setNetworkPolicy`` / ``instances.getNetworkPolicy`` (contracts/gateway/network.py):
the policy is stored, then each running machine's host writes it into that machine's network
namespace before the answer (a stopped or new machine gets it when it starts)."""

from __future__ import annotations

import structlog

from contracts.gateway.network import (
    INSTANCES_GET_NETWORK_POLICY,
    INSTANCES_SET_NETWORK_POLICY,
    NetworkPolicyResult,
    SetNetworkPolicyParams,
)
from contracts.gateway.types import InstanceRef
from contracts.host import rpc as h
from contracts.models import Machine
from contracts.rpc.jsonrpc import handles
from contracts.status import UP_OR_COMING_UP
from controlplane.machines.machine_config import fan_out
from controlplane.store import Store
from services.gateway.auth import Caller
from services.gateway.rpc.host_control import HostCalls

log = structlog.get_logger(__name__)

#: Machines whose network namespace exists (a starting one gets the policy at its start).


class NetworkOps:
    def __init__(self, store: Store, hosts: HostCalls) -> None:
        self.store = store
        self.hosts = hosts

    @handles(INSTANCES_SET_NETWORK_POLICY)
    async def instances_set_network_policy(
        self, p: SetNetworkPolicyParams, c: Caller
    ) -> NetworkPolicyResult:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)  # NotFound
        await self.store.instance_settings.set_egress(p.instance_id, p.egress)
        machines = [
            m for m in await self.store.list_machines(p.instance_id) if m.status in UP_OR_COMING_UP
        ]

        async def apply(m: Machine) -> None:
            await self.hosts(h.APPLY_EGRESS, h.HostMachineParams(machine_id=m.id), machine=m)

        failed = await fan_out(machines, apply)
        log.info("instance.network_policy_set", instance_id=p.instance_id, by=c.token_id,
                 default=p.egress.default, allow=len(p.egress.allow), deny=len(p.egress.deny),
                 machines=len(machines), failed=len(failed))  # fmt: skip
        return NetworkPolicyResult(instance_id=p.instance_id, egress=p.egress,
                                   machines=len(machines), failed=failed)  # fmt: skip

    @handles(INSTANCES_GET_NETWORK_POLICY)
    async def instances_get_network_policy(self, p: InstanceRef, c: Caller) -> NetworkPolicyResult:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)
        policy = await self.store.instance_settings.egress(p.instance_id)
        return NetworkPolicyResult(instance_id=p.instance_id, egress=policy)
