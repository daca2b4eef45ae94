"""Snapshot records (machines.snapshot) in Redis (``store.snapshots``): one JSON value each, and
each instance's set of ids. The snapshot itself is on its machine's host (providers/local/homes.py).

A snapshot's place under its instance's cap is taken before its copy starts (``reserve``) and
counted until it is saved or released: checked after the copy, as many calls at once as the
copy is slow would each pass the check. A reservation lapses on its own (a gateway that died
mid-copy): what the copy left on disk then belongs to no record, and the host's sweeper takes it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import msgspec

from contracts.errors import NotFound
from contracts.gateway_fork import Snapshot

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: KEYS: the instance's snapshot ids, its reservations; ARGV: the id, now (ms), the cap, how
#: long the reservation holds (ms). The count held if the cap is reached, else -1 (reserved).
RESERVE = """
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = redis.call('SCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if held >= tonumber(ARGV[3]) then return held end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
return -1
"""
#: A reservation holds as long as the slowest copy may take (the host's lock on the machine
#: through a memory image is held as long).
RESERVATION_S = 3600.0


class SnapshotRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def reserve(self, instance_id: str, snapshot_id: str, limit: int,
                      hold_s: float = RESERVATION_S) -> int | None:  # fmt: skip
        """Take a place for ``snapshot_id`` under the instance's cap of ``limit``, at once with
        the count: None if taken, else how many it holds (saved or being taken)."""
        k = self._keys
        keys = [
            k.k_instance_snapshots(instance_id),
            k.k_instance_snapshot_reservations(instance_id),
        ]
        now_ms = int(time.time() * 1000)
        held = await self._redis.eval(RESERVE, 2, *keys, snapshot_id, now_ms, limit,
                                            int(hold_s * 1000))  # fmt: skip
        return None if int(held) < 0 else int(held)

    async def release(self, instance_id: str, snapshot_id: str) -> None:
        """A reservation given back: its copy failed."""
        key = self._keys.k_instance_snapshot_reservations(instance_id)
        await self._redis.zrem(key, snapshot_id)

    async def save(self, snapshot: Snapshot) -> None:
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(k.k_snapshot(snapshot.id), msgspec.json.encode(snapshot))
            pipe.sadd(k.k_instance_snapshots(snapshot.instance_id), snapshot.id)
            pipe.zrem(k.k_instance_snapshot_reservations(snapshot.instance_id), snapshot.id)
            await pipe.execute()

    async def get(self, snapshot_id: str) -> Snapshot:
        raw = await self._redis.get(self._keys.k_snapshot(snapshot_id))
        if raw is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        return msgspec.json.decode(raw, type=Snapshot)

    async def of_instance(self, instance_id: str) -> list[Snapshot]:
        """The instance's snapshots, oldest first."""
        r, k = self._redis, self._keys
        ids = sorted(cast(set[str], await r.smembers(k.k_instance_snapshots(instance_id))))
        raws = await r.mget([k.k_snapshot(i) for i in ids]) if ids else []
        found = [msgspec.json.decode(raw, type=Snapshot) for raw in raws if raw is not None]
        return sorted(found, key=lambda s: s.created_at)

    async def count(self, instance_id: str) -> int:
        key = self._keys.k_instance_snapshots(instance_id)
        return int(await self._redis.scard(key))

    async def forget(self, snapshot: Snapshot) -> None:
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.k_snapshot(snapshot.id))
            pipe.srem(k.k_instance_snapshots(snapshot.instance_id), snapshot.id)
            await pipe.execute()
