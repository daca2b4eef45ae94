"""An instance's own machine limits in Redis (contracts/gateway_limits.py)."""

from __future__ import annotations

from contracts.gateway_limits import LimitsOverride
from services.common.store import Store
from services.common.store_struct import load_struct, save_struct


async def instance_limits(store: Store, instance_id: str) -> LimitsOverride:
    return await load_struct(store, store.keys.k_instance_limits(instance_id), LimitsOverride)


async def set_instance_limits(store: Store, instance_id: str, limits: LimitsOverride) -> None:
    await save_struct(store, store.keys.k_instance_limits(instance_id), limits)
