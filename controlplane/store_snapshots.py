"""Snapshot records (machines.snapshot) in Redis (``store.snapshots``): one JSON value each, and
each instance's set of ids. The snapshot itself is on its machine's host (providers/homes_fs.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import msgspec

from contracts.errors import NotFound
from contracts.gateway_fork import Snapshot

if TYPE_CHECKING:
    from controlplane.store import Store


class SnapshotRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def save(self, snapshot: Snapshot) -> None:
        k = self._store.keys
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.set(k.k_snapshot(snapshot.id), msgspec.json.encode(snapshot))
            pipe.sadd(k.k_instance_snapshots(snapshot.instance_id), snapshot.id)
            await pipe.execute()

    async def get(self, snapshot_id: str) -> Snapshot:
        raw = await self._store.redis.get(self._store.keys.k_snapshot(snapshot_id))
        if raw is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        return msgspec.json.decode(raw, type=Snapshot)

    async def of_instance(self, instance_id: str) -> list[Snapshot]:
        """The instance's snapshots, oldest first."""
        r, k = self._store.redis, self._store.keys
        ids = sorted(cast(set[str], await r.smembers(k.k_instance_snapshots(instance_id))))
        raws = await r.mget([k.k_snapshot(i) for i in ids]) if ids else []
        found = [msgspec.json.decode(raw, type=Snapshot) for raw in raws if raw is not None]
        return sorted(found, key=lambda s: s.created_at)

    async def count(self, instance_id: str) -> int:
        key = self._store.keys.k_instance_snapshots(instance_id)
        return int(await self._store.redis.scard(key))

    async def forget(self, snapshot: Snapshot) -> None:
        k = self._store.keys
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.k_snapshot(snapshot.id))
            pipe.srem(k.k_instance_snapshots(snapshot.instance_id), snapshot.id)
            await pipe.execute()
