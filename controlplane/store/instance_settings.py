"""An instance's own settings in Redis (``store.instance_settings``): its machine limits
(contracts/gateway/limits.py), its egress policy (contracts/gateway/network.py) and its runtime
(instances.setRuntime). A limits or policy value equal to its type's default is stored as no key
at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast, get_args

import msgspec

from contracts.gateway.limits import LimitsOverride
from contracts.gateway.network import EgressPolicy
from contracts.models import Runtime

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

S = TypeVar("S", bound=msgspec.Struct)


class InstanceSettingsRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def limits(self, instance_id: str) -> LimitsOverride:
        return await self._load(self._keys.k_instance_limits(instance_id), LimitsOverride)

    async def set_limits(self, instance_id: str, limits: LimitsOverride) -> None:
        await self._save(self._keys.k_instance_limits(instance_id), limits)

    async def egress(self, instance_id: str) -> EgressPolicy:
        return await self._load(self._keys.k_instance_egress(instance_id), EgressPolicy)

    async def set_egress(self, instance_id: str, policy: EgressPolicy) -> None:
        await self._save(self._keys.k_instance_egress(instance_id), policy)

    async def runtime(self, instance_id: str) -> Runtime | None:
        """The instance's own runtime; None: it has none (or one this version does not know)."""
        raw = await self._redis.hget(self._keys.K_RUNTIME, instance_id)
        return cast(Runtime, raw) if raw in get_args(Runtime) else None

    async def set_runtime(self, instance_id: str, runtime: Runtime | None) -> None:
        if runtime is None:
            await self._redis.hdel(self._keys.K_RUNTIME, instance_id)
        else:
            await self._redis.hset(self._keys.K_RUNTIME, instance_id, runtime)

    async def _load(self, key: str, kind: type[S]) -> S:
        raw = await self._redis.get(key)
        return kind() if raw is None else msgspec.json.decode(raw, type=kind)

    async def _save(self, key: str, value: msgspec.Struct) -> None:
        if value == type(value)():
            await self._redis.delete(key)
        else:
            await self._redis.set(key, msgspec.json.encode(value))
