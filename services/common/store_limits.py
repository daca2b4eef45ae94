"""An instance's own machine limits in Redis (contracts/gateway_limits.py)."""

from __future__ import annotations

import msgspec

from contracts.gateway_limits import LimitsOverride
from services.common.store import Store
from services.common.store_keys import k_instance_limits


async def instance_limits(store: Store, instance_id: str) -> LimitsOverride:
    raw = await store.redis.get(k_instance_limits(instance_id))
    if raw is None:
        return LimitsOverride()
    return msgspec.json.decode(raw, type=LimitsOverride)


async def set_instance_limits(store: Store, instance_id: str, limits: LimitsOverride) -> None:
    key = k_instance_limits(instance_id)
    if limits == LimitsOverride():
        await store.redis.delete(key)
    else:
        await store.redis.set(key, msgspec.json.encode(limits))
