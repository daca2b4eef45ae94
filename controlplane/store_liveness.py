"""Heartbeats in Redis (``store.heartbeats``): each machine's last beat, and which machines
liveness marked unresponsive (so that their next beat is a recovery)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from controlplane.store import Store


class HeartbeatRecords:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._k = store.keys

    async def record(self, beats: dict[str, float]) -> list[str]:
        """Record machine -> last beat (epoch seconds); returns those of the machines that are
        marked unresponsive. One round trip."""
        ids = list(beats)
        async with self._store.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._k.K_HEARTBEATS, beats)
            pipe.smismember(self._k.K_UNRESPONSIVE, ids)
            _, flags = await pipe.execute()
        return [mid for mid, flagged in zip(ids, cast(list[int], flags), strict=True) if flagged]

    async def stale(self, before: float, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` (machine, last beat) whose last beat is older than ``before``."""
        return cast(
            list[tuple[str, float]],
            await self._store.redis.zrangebyscore(
                self._k.K_HEARTBEATS, "-inf", before, start=0, num=limit, withscores=True
            ),
        )

    async def last_beat(self, machine_id: str) -> float | None:
        """The machine's last recorded beat (None: not watched)."""
        return await self._store.redis.zscore(self._k.K_HEARTBEATS, machine_id)

    async def forget(self, machine_id: str) -> None:
        """Stop watching a machine (it is gone, or failed or archived)."""
        await self._store.redis.zrem(self._k.K_HEARTBEATS, machine_id)

    async def mark_unresponsive(self, machine_id: str) -> None:
        await self._store.redis.sadd(self._k.K_UNRESPONSIVE, machine_id)

    async def clear_unresponsive(self, machine_id: str) -> None:
        await self._store.redis.srem(self._k.K_UNRESPONSIVE, machine_id)
