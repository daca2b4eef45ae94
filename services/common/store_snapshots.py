"""Snapshot records (machines.snapshot): one JSON value each, and each instance's set of ids.
The snapshot itself is on its machine's host (providers/homes_fs.py)."""

from __future__ import annotations

from typing import cast

import msgspec

from contracts.errors import NotFound
from contracts.gateway_fork import Snapshot
from services.common.store import Store


async def save_snapshot(store: Store, snapshot: Snapshot) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.set(store.keys.k_snapshot(snapshot.id), msgspec.json.encode(snapshot))
        pipe.sadd(store.keys.k_instance_snapshots(snapshot.instance_id), snapshot.id)
        await pipe.execute()


async def get_snapshot(store: Store, snapshot_id: str) -> Snapshot:
    raw = await store.redis.get(store.keys.k_snapshot(snapshot_id))
    if raw is None:
        raise NotFound(f"snapshot {snapshot_id} not found")
    return msgspec.json.decode(raw, type=Snapshot)


async def list_snapshots(store: Store, instance_id: str) -> list[Snapshot]:
    ids = sorted(
        cast(set[str], await store.redis.smembers(store.keys.k_instance_snapshots(instance_id)))
    )
    raws = await store.redis.mget([store.keys.k_snapshot(i) for i in ids]) if ids else []
    found = [msgspec.json.decode(r, type=Snapshot) for r in raws if r is not None]
    return sorted(found, key=lambda s: s.created_at)


async def count_snapshots(store: Store, instance_id: str) -> int:
    return int(await store.redis.scard(store.keys.k_instance_snapshots(instance_id)))


async def forget_snapshot(store: Store, snapshot: Snapshot) -> None:
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.delete(store.keys.k_snapshot(snapshot.id))
        pipe.srem(store.keys.k_instance_snapshots(snapshot.instance_id), snapshot.id)
        await pipe.execute()
