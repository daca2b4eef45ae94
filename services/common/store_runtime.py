"""Each instance's runtime setting (instances.setRuntime) in Redis."""

from __future__ import annotations

from typing import cast, get_args

from contracts.models import Runtime
from services.common.store import Store


async def set_runtime(store: Store, instance_id: str, runtime: Runtime | None) -> None:
    if runtime is None:
        await store.redis.hdel(store.keys.K_RUNTIME, instance_id)
    else:
        await store.redis.hset(store.keys.K_RUNTIME, instance_id, runtime)


async def runtime_of(store: Store, instance_id: str) -> Runtime | None:
    """The instance's own setting; None: it has none (or one this version does not know)."""
    raw = await store.redis.hget(store.keys.K_RUNTIME, instance_id)
    return cast(Runtime, raw) if raw in get_args(Runtime) else None
