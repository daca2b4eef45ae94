"""Codemode's records in Redis: kept runs and per-instance bridges.

A run record expires after ``RUN_TTL_S``; its index entries are trimmed when listed. A bridge's
``authorization`` arrives here already sealed (``SecretBox``), as repo tokens do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec

from contracts.gateway.codemode import McpBridge, OpenApiBridge, RunRecord

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

RUN_TTL_S = 7 * 24 * 3600
#: Index entries kept per index (older records are dropped from the lists).
MAX_INDEXED = 5000
Bridge = OpenApiBridge | McpBridge
_BRIDGE = msgspec.json.Decoder(Bridge)


class CodemodeRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis: Any = redis
        self._k = keys

    async def save_run(self, record: RunRecord) -> None:
        score = record.started_at.timestamp()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._k.k_codemode_run(record.run_id), msgspec.json.encode(record), ex=RUN_TTL_S
            )
            for index in self._indexes(record.instance_id):
                pipe.zadd(index, {record.run_id: score})
                pipe.zremrangebyrank(index, 0, -MAX_INDEXED - 1)
            await pipe.execute()

    def _indexes(self, instance_id: str | None) -> list[str]:
        found = [self._k.K_CODEMODE_RUNS]
        if instance_id is not None:
            found.append(self._k.k_codemode_instance_runs(instance_id))
        return found

    async def get_run(self, run_id: str) -> RunRecord | None:
        raw = await self._redis.get(self._k.k_codemode_run(run_id))
        return None if raw is None else msgspec.json.decode(raw, type=RunRecord)

    async def list_runs(self, instance_id: str | None, limit: int) -> list[RunRecord]:
        """Newest first; ``instance_id`` None: every run (the admin's view)."""
        index = self._indexes(instance_id)[-1]
        ids = cast(list[str], await self._redis.zrevrange(index, 0, limit - 1))
        if not ids:
            return []
        raws = await self._redis.mget([self._k.k_codemode_run(i) for i in ids])
        return [msgspec.json.decode(r, type=RunRecord) for r in raws if r is not None]

    async def set_bridge(self, instance_id: str, bridge: Bridge) -> None:
        key = self._k.k_codemode_bridges(instance_id)
        await self._redis.hset(key, bridge.name, msgspec.json.encode(bridge))

    async def remove_bridge(self, instance_id: str, name: str) -> bool:
        return bool(await self._redis.hdel(self._k.k_codemode_bridges(instance_id), name))

    async def bridges(self, instance_id: str) -> list[Bridge]:
        raw = cast(
            dict[str, str], await self._redis.hgetall(self._k.k_codemode_bridges(instance_id))
        )
        return [_BRIDGE.decode(v) for _, v in sorted(raw.items())]
