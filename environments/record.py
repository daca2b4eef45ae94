"""A machine's lifecycle record in Redis: its devcontainer settings (written when its
environment is resolved) and the once-per-machine stages done (so that a restart, a redelivered
report or a stop/start never runs them twice)."""

from __future__ import annotations

from typing import cast

import msgspec

from environments.lifecycle import MachineLifecycle
from services.common.store import Store


async def save(store: Store, machine_id: str, lifecycle: MachineLifecycle) -> None:
    await store.redis.set(store.keys.k_lifecycle(machine_id), msgspec.json.encode(lifecycle))


async def load(store: Store, machine_id: str) -> MachineLifecycle | None:
    raw = await store.redis.get(store.keys.k_lifecycle(machine_id))
    return None if raw is None else msgspec.json.decode(raw, type=MachineLifecycle)


async def done(store: Store, machine_id: str) -> set[str]:
    return cast(set[str], await store.redis.smembers(store.keys.k_lifecycle_done(machine_id)))


async def mark_done(store: Store, machine_id: str, stage: str) -> None:
    await store.redis.sadd(store.keys.k_lifecycle_done(machine_id), stage)
