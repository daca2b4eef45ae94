"""Heartbeats in Redis (``store.heartbeats``): each machine's last beat, and which machines
liveness marked unresponsive (so that their next beat is a recovery)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class HeartbeatRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys

    async def record(self, beats: dict[str, float]) -> list[str]:
        """Record machine -> last beat (epoch seconds); returns those of the machines that are
        marked unresponsive. One round trip."""
        ids = list(beats)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._k.K_HEARTBEATS, beats)
            pipe.smismember(self._k.K_UNRESPONSIVE, ids)
            _, flags = await pipe.execute()
        return [mid for mid, flagged in zip(ids, cast(list[int], flags), strict=True) if flagged]

    async def stale(self, before: float, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` (machine, last beat) whose last beat is older than ``before``."""
        return cast(
            list[tuple[str, float]],
            await self._redis.zrangebyscore(
                self._k.K_HEARTBEATS, "-inf", before, start=0, num=limit, withscores=True
            ),
        )

    async def last_beat(self, machine_id: str) -> float | None:
        """The machine's last recorded beat (None: not watched)."""
        return await self._redis.zscore(self._k.K_HEARTBEATS, machine_id)

    async def forget(self, machine_id: str) -> None:
        """Stop watching a machine (it is gone, or failed or archived)."""
        await self._redis.zrem(self._k.K_HEARTBEATS, machine_id)

    async def mark_unresponsive(self, machine_id: str) -> None:
        await self._redis.sadd(self._k.K_UNRESPONSIVE, machine_id)

    async def clear_unresponsive(self, machine_id: str) -> None:
        await self._redis.srem(self._k.K_UNRESPONSIVE, machine_id)
