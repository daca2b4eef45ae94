"""An instance's environment and what a machine runs of it, in Redis
(contracts/gateway_environments.py)."""

from __future__ import annotations

import msgspec

from contracts.gateway_environments import Environment
from services.common.store import Store
from services.common.store_keys import (
    F_ENVIRONMENT,
    F_ENVIRONMENT_IMAGE,
)


async def instance_environment(store: Store, instance_id: str) -> Environment | None:
    raw = await store.redis.get(store.keys.k_instance_environment(instance_id))
    return None if raw is None else msgspec.json.decode(raw, type=Environment)


async def set_instance_environment(
    store: Store, instance_id: str, environment: Environment | None
) -> None:
    key = store.keys.k_instance_environment(instance_id)
    if environment is None:
        await store.redis.delete(key)
    else:
        await store.redis.set(key, msgspec.json.encode(environment))


async def set_machine_environment(
    store: Store, machine_id: str, environment: str, image: str | None
) -> None:
    """Record which environment the machine runs and which build of it (``image``: the
    image ID; None: the host's own root)."""
    key = store.keys.k_machine(machine_id)
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, F_ENVIRONMENT, environment)
        if image is None:
            pipe.hdel(key, F_ENVIRONMENT_IMAGE)
        else:
            pipe.hset(key, F_ENVIRONMENT_IMAGE, image)
        await pipe.execute()


async def add_instance_build(store: Store, instance_id: str, image: str) -> None:
    """Record a build made for the instance (an image ID): one it may name from then on."""
    await store.redis.sadd(store.keys.k_instance_builds(instance_id), image)


async def instance_builds(store: Store, instance_id: str) -> set[str]:
    return {str(v) for v in await store.redis.smembers(store.keys.k_instance_builds(instance_id))}
