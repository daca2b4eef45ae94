"""An instance's egress policy in Redis (contracts/gateway_network.py)."""

from __future__ import annotations

from contracts.gateway_network import EgressPolicy
from services.common.store import Store
from services.common.store_struct import load_struct, save_struct


async def instance_egress(store: Store, instance_id: str) -> EgressPolicy:
    return await load_struct(store, store.keys.k_instance_egress(instance_id), EgressPolicy)


async def set_instance_egress(store: Store, instance_id: str, policy: EgressPolicy) -> None:
    await save_struct(store, store.keys.k_instance_egress(instance_id), policy)
