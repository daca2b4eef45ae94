"""An instance's environment and what a machine runs of it, in Redis (``store.environments``,
contracts/gateway/environments.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from contracts.gateway.environments import Environment
from controlplane.store.keys import F_ENVIRONMENT, F_ENVIRONMENT_IMAGE

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class EnvironmentRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def of_instance(self, instance_id: str) -> Environment | None:
        raw = await self._redis.get(self._keys.k_instance_environment(instance_id))
        return None if raw is None else msgspec.json.decode(raw, type=Environment)

    async def set_of_instance(self, instance_id: str, environment: Environment | None) -> None:
        key = self._keys.k_instance_environment(instance_id)
        if environment is None:
            await self._redis.delete(key)
        else:
            await self._redis.set(key, msgspec.json.encode(environment))

    async def set_of_machine(self, machine_id: str, environment: str, image: str | None) -> None:
        """Record which environment the machine runs and which build of it (``image``: the
        image ID; None: the host's own root)."""
        key = self._keys.k_machine(machine_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, F_ENVIRONMENT, environment)
            if image is None:
                pipe.hdel(key, F_ENVIRONMENT_IMAGE)
            else:
                pipe.hset(key, F_ENVIRONMENT_IMAGE, image)
            await pipe.execute()

    async def add_build(self, instance_id: str, image: str) -> None:
        """Record a build made for the instance (an image ID): one it may name from then on."""
        await self._redis.sadd(self._keys.k_instance_builds(instance_id), image)

    async def builds(self, instance_id: str) -> set[str]:
        raw = await self._redis.smembers(self._keys.k_instance_builds(instance_id))
        return {str(v) for v in raw}
