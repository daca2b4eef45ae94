"""What stopping and starting machines need in Redis: whether a stop was carried out, each
instance's auto-stop setting, and each machine's last gateway activity (docs/stop-start.md)."""

from __future__ import annotations

import time
from typing import cast

from services.common.store import Store
from services.common.store_keys import F_STOP_DONE_AT


async def stop_pending(store: Store, machine_id: str) -> None:
    """A new stop: its processes are not ended yet (the provisioner says when they are)."""
    await store.redis.hdel(store.keys.k_machine(machine_id), F_STOP_DONE_AT)


async def mark_stop_done(store: Store, machine_id: str) -> None:
    await store.redis.hset(store.keys.k_machine(machine_id), F_STOP_DONE_AT, str(time.time()))


async def stop_done(store: Store, machine_id: str) -> bool:
    return bool(await store.redis.hexists(store.keys.k_machine(machine_id), F_STOP_DONE_AT))


async def set_autostop(store: Store, instance_id: str, idle_after_s: int) -> None:
    if idle_after_s <= 0:
        await store.redis.hdel(store.keys.K_AUTOSTOP, instance_id)
    else:
        await store.redis.hset(store.keys.K_AUTOSTOP, instance_id, str(idle_after_s))


async def autostop_of(store: Store, instance_id: str) -> int:
    raw = await store.redis.hget(store.keys.K_AUTOSTOP, instance_id)
    return int(raw) if raw else 0


async def autostops(store: Store) -> dict[str, int]:
    """Every instance with auto-stop on, and its idle time in seconds."""
    raw = cast(dict[str, str], await store.redis.hgetall(store.keys.K_AUTOSTOP))
    return {iid: int(v) for iid, v in raw.items() if int(v) > 0}


async def record_activity(store: Store, machine_ids: dict[str, float]) -> None:
    """The last gateway activity of each machine (epoch seconds); only ever moves forward."""
    if machine_ids:
        await store.redis.zadd(store.keys.K_ACTIVITY, dict(machine_ids), gt=True)


async def last_activity(store: Store, machine_ids: list[str]) -> dict[str, float | None]:
    if not machine_ids:
        return {}
    scores = await store.redis.zmscore(store.keys.K_ACTIVITY, machine_ids)
    return dict(zip(machine_ids, scores, strict=True))


async def reset_activity(store: Store, machine_id: str) -> None:
    """A (re)started machine's idle time counts from now."""
    await store.redis.zadd(store.keys.K_ACTIVITY, {machine_id: time.time()})


async def forget_activity(store: Store, machine_id: str) -> None:
    await store.redis.zrem(store.keys.K_ACTIVITY, machine_id)
