"""What stopping and starting machines need in Redis (``store.stops``): whether a stop was
carried out, each instance's auto-stop setting, and each machine's last gateway activity
(docs/stop-start.md)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple, cast

from contracts.gateway.stop import AutoStopAction
from controlplane.store.keys import F_STOP_DONE_AT, F_STOP_PENDING

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class AutoStopRule(NamedTuple):
    idle_after_s: int
    #: None: pause a gvisor machine, stop a namespaces one.
    action: AutoStopAction | None = None


def _rule(raw: str) -> AutoStopRule:
    idle, _, action = raw.partition(":")
    return AutoStopRule(int(idle), "pause" if action == "pause" else
                        "stop" if action == "stop" else None)  # fmt: skip


class StopRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def pending(self, machine_id: str) -> None:
        """A new stop: its processes are not ended yet (the provisioner says when they are)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.k_machine(machine_id), F_STOP_DONE_AT)
            pipe.hset(self._keys.k_machine(machine_id), F_STOP_PENDING, "1")
            await pipe.execute()

    async def mark_done(self, machine_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.k_machine(machine_id), F_STOP_DONE_AT, str(time.time()))
            pipe.hdel(self._keys.k_machine(machine_id), F_STOP_PENDING)
            await pipe.execute()

    async def done(self, machine_id: str) -> bool:
        key = self._keys.k_machine(machine_id)
        return bool(await self._redis.hexists(key, F_STOP_DONE_AT))

    async def outstanding(self, machine_id: str) -> bool:
        """A stop was asked for and is not carried out yet (never after a create alone)."""
        key = self._keys.k_machine(machine_id)
        return bool(await self._redis.hexists(key, F_STOP_PENDING))

    async def set_autostop(self, instance_id: str, rule: AutoStopRule) -> None:
        """``idle_after_s`` 0 is kept, action forgotten: off, which the platform's default
        (``FLEET_AUTOPAUSE_IDLE_S``) does not override."""
        idle = max(rule.idle_after_s, 0)
        raw = f"{idle}:{rule.action}" if rule.action and idle else str(idle)
        await self._redis.hset(self._keys.K_AUTOSTOP, instance_id, raw)

    async def autostop(self, instance_id: str) -> AutoStopRule:
        key = self._keys.K_AUTOSTOP
        raw = cast(str | None, await self._redis.hget(key, instance_id))
        return _rule(raw) if raw else AutoStopRule(0)

    async def autostops(self) -> dict[str, AutoStopRule]:
        """Every instance that set auto-stop, and its rule (``idle_after_s`` 0: turned off)."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._keys.K_AUTOSTOP))
        return {iid: _rule(v) for iid, v in raw.items()}

    async def paused_since(self, machine_ids: list[str], now: float) -> dict[str, float]:
        """When each of these paused machines was first seen paused (``now`` for one not seen
        before). Every other machine is forgotten: a resumed one counts again from its next
        pause."""
        r, key = self._redis, self._keys.K_PAUSED_SINCE
        known = cast(list[tuple[str, float]], await r.zrange(key, 0, -1, withscores=True))
        paused = set(machine_ids)
        if gone := [m for m, _ in known if m not in paused]:
            await r.zrem(key, *gone)
        if not machine_ids:
            return {}
        await r.zadd(key, dict.fromkeys(machine_ids, now), nx=True)
        scores = await r.zmscore(key, machine_ids)
        return {m: now if s is None else s for m, s in zip(machine_ids, scores, strict=True)}

    async def record_activity(self, machine_ids: dict[str, float]) -> None:
        """The last gateway activity of each machine (epoch seconds); only ever moves forward."""
        if machine_ids:
            await self._redis.zadd(self._keys.K_ACTIVITY, dict(machine_ids), gt=True)

    async def last_activity(self, machine_ids: list[str]) -> dict[str, float | None]:
        if not machine_ids:
            return {}
        scores = await self._redis.zmscore(self._keys.K_ACTIVITY, machine_ids)
        return dict(zip(machine_ids, scores, strict=True))

    async def reset_activity(self, machine_id: str) -> None:
        """A (re)started machine's idle time counts from now."""
        await self._redis.zadd(self._keys.K_ACTIVITY, {machine_id: time.time()})

    async def forget_activity(self, machine_id: str) -> None:
        await self._redis.zrem(self._keys.K_ACTIVITY, machine_id)
