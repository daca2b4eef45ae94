"""A machine's lifecycle record in Redis (``store.lifecycles``): its devcontainer settings
(environments/lifecycle_commands.py ``MachineLifecycle``, written when its environment is resolved)
and the once-per-machine stages done (so that a restart, a redelivered report or a stop/start never
runs them twice). The record's type is the caller's: environments sits above this layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

import msgspec

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

S = TypeVar("S", bound=msgspec.Struct)


class LifecycleRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def save(self, machine_id: str, lifecycle: msgspec.Struct) -> None:
        key = self._keys.k_lifecycle(machine_id)
        await self._redis.set(key, msgspec.json.encode(lifecycle))

    async def load(self, machine_id: str, kind: type[S]) -> S | None:
        raw = await self._redis.get(self._keys.k_lifecycle(machine_id))
        return None if raw is None else msgspec.json.decode(raw, type=kind)

    async def done(self, machine_id: str) -> set[str]:
        key = self._keys.k_lifecycle_done(machine_id)
        return cast(set[str], await self._redis.smembers(key))

    async def mark_done(self, machine_id: str, stage: str) -> None:
        await self._redis.sadd(self._keys.k_lifecycle_done(machine_id), stage)
