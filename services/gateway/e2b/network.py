"""E2B's network settings as an instance's egress policy (``instances.setNetworkPolicy``:
docs/security.md#network-policy), at a sandbox's create and on ``PUT /sandboxes/{id}/network``.

``allow_internet_access: false``, or ``0.0.0.0/0`` among ``denyOut``, is a policy that denies
by default; ``allowOut`` are its exceptions, the rest of ``denyOut`` what it denies beside (deny
wins, as E2B's does). Addresses, CIDRs and domains pass as they are, checked by the policy.
"""

from __future__ import annotations

from contracts.e2b import control as api
from contracts.gateway.network import (
    INSTANCES_SET_NETWORK_POLICY,
    EgressPolicy,
    SetNetworkPolicyParams,
)
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.errors import unsupported

#: What denies every address in E2B's lists.
_EVERYWHERE = frozenset({"0.0.0.0/0", "::/0"})


def egress_of(network: api.Network | None, internet: bool | None) -> EgressPolicy | None:
    """The policy E2B's settings ask for (None: none asked, the instance's own stands)."""
    if network is not None:
        for field, value in (("network.dnsServers", network.dns_servers),
                             ("network.egressProxy", network.egress_proxy),
                             ("network.maskRequestHost", network.mask_request_host),
                             ("network.rules", network.rules)):  # fmt: skip
            if value:
                raise unsupported(
                    field,
                    "fleetd's egress has allow and deny lists "
                    "(secrets are added at its proxy: docs/secrets.md)",
                )
    allow = list(network.allow_out or []) if network else []
    deny = list(network.deny_out or []) if network else []
    if internet is None and not allow and not deny:
        return None
    closed = internet is False or bool(_EVERYWHERE & set(deny))
    return EgressPolicy(default="deny" if closed else "allow", allow=allow,
                        deny=[d for d in deny if d not in _EVERYWHERE])  # fmt: skip


async def set_egress(calls: Calls, instance_id: str, policy: EgressPolicy, caller: Caller) -> None:
    await calls(INSTANCES_SET_NETWORK_POLICY, SetNetworkPolicyParams(
        instance_id=instance_id, egress=policy), caller)  # fmt: skip
