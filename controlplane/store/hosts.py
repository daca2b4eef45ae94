"""Hosts in Redis (``store.hosts``): each provisioner's heartbeat and capacity, the machines it
took, and the placement watchdog's compare-and-set (docs/hosts.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import msgspec

from contracts.status import ARCHIVED_OR_ARCHIVING, MachineStatus as S
from controlplane.store import scripts as store_scripts
from controlplane.store.keys import (
    F_HOST_CAPACITY,
    F_HOST_DRAINING,
    F_HOST_ID,
    F_HOST_MEMORY_LOW,
    F_HOST_PROXY_URL,
    F_STATUS,
    F_STATUS_REASON,
    F_UPDATED_AT,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: A machine in one of these no longer holds a place on its host (stopped ones hold a home). A
#: failed one does until it is archived: its processes go on there (its daemon answers).

#: Fail a machine only while it is still ``created`` (no provisioner took it since).
_FAIL_UNPLACED = f"""
if redis.call('HGET', KEYS[1], '{F_STATUS}') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], '{F_STATUS}', ARGV[2], '{F_STATUS_REASON}', ARGV[3],
           '{F_UPDATED_AT}', ARGV[4])
return 1
"""


class Occupancy(msgspec.Struct, frozen=True):
    """The machines a host holds: running (any status but stopped or archived: a failed one
    runs until it is archived) and stopped."""

    running: frozenset[str]
    stopped: int


class HostRecord(msgspec.Struct, frozen=True, kw_only=True):
    host_id: str
    #: 0: no limit.
    capacity: int
    #: Epoch seconds.
    last_beat: float
    occupancy: Occupancy
    draining: bool = False
    memory_low: bool = False


class HostRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys
        self._fail_unplaced = store_scripts.BoundScript(_FAIL_UNPLACED)

    async def beat(
        self, host_id: str, capacity: int, at: float, *, memory_low: bool = False,
        proxy_url: str = "",
    ) -> bool:  # fmt: skip
        """The host's provisioner is alive (at ``at``, epoch seconds), with this capacity (and
        below its memory floor or not), its gvisor machines reaching the egress proxy at
        ``proxy_url``; returns whether the host is drained. One round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._k.K_HOSTS, {host_id: at})
            pipe.hset(
                self._k.k_host(host_id),
                mapping={
                    F_HOST_CAPACITY: str(capacity),
                    F_HOST_MEMORY_LOW: "1" if memory_low else "0",
                    F_HOST_PROXY_URL: proxy_url,
                },
            )
            pipe.hget(self._k.k_host(host_id), F_HOST_DRAINING)
            _, _, draining = await pipe.execute()
        return bool(draining == "1")

    async def set_draining(self, host_id: str, draining: bool) -> bool:
        """Drain (or undrain) a host that announced itself; False: no such host."""
        if await self._redis.zscore(self._k.K_HOSTS, host_id) is None:
            return False
        await self._redis.hset(self._k.k_host(host_id), F_HOST_DRAINING, "1" if draining else "0")
        return True

    async def proxy_url(self, host_id: str | None) -> str:
        """Where the host's gvisor machines reach the egress proxy, as it recorded it (empty:
        none, or no host yet)."""
        if host_id is None:
            return ""
        return cast(str, await self._redis.hget(self._k.k_host(host_id), F_HOST_PROXY_URL) or "")

    async def draining(self, host_id: str) -> bool:
        """Whether the host is drained (hosts.drain). One round trip."""
        return await self._redis.hget(self._k.k_host(host_id), F_HOST_DRAINING) == "1"

    async def took(self, host_id: str, machine_id: str) -> None:
        """The host's provisioner is starting ``machine_id``."""
        await self._redis.sadd(self._k.k_host_machines(host_id), machine_id)

    async def occupancy(self, host_id: str) -> Occupancy:
        """The host's machines now; those that ended or moved to another host are forgotten.
        Two round trips, whatever the number of machines."""
        r = self._redis
        key = self._k.k_host_machines(host_id)
        ids = sorted(cast(set[str], await r.smembers(key)))
        async with r.pipeline(transaction=False) as pipe:
            for mid in ids:
                pipe.hmget(self._k.k_machine(mid), [F_STATUS, F_HOST_ID])
            rows = cast(list[list[str | None]], await pipe.execute())
        running: set[str] = set()
        stopped, gone = 0, []
        for mid, (status, owner) in zip(ids, rows, strict=True):
            if status is None or owner != host_id or S(status) in ARCHIVED_OR_ARCHIVING:
                gone.append(mid)
            elif status == S.STOPPED:
                stopped += 1
            else:
                running.add(mid)
        if gone:
            await r.srem(key, *gone)
        return Occupancy(running=frozenset(running), stopped=stopped)

    async def all(self) -> list[HostRecord]:
        """Every host that ever heartbeat, by id."""
        r = self._redis
        beats = cast(
            list[tuple[str, float]], await r.zrange(self._k.K_HOSTS, 0, -1, withscores=True)
        )
        return [await self._record(host_id, at) for host_id, at in sorted(beats)]

    async def record(self, host_id: str) -> HostRecord | None:
        """One host as of its last heartbeat; None: it never announced itself."""
        at = await self._redis.zscore(self._k.K_HOSTS, host_id)
        return None if at is None else await self._record(host_id, float(at))

    async def _record(self, host_id: str, at: float) -> HostRecord:
        capacity, draining, low = await self._redis.hmget(
            self._k.k_host(host_id), [F_HOST_CAPACITY, F_HOST_DRAINING, F_HOST_MEMORY_LOW]
        )
        return HostRecord(host_id=host_id, capacity=int(capacity or 0), last_beat=at,
                          occupancy=await self.occupancy(host_id),
                          draining=draining == "1", memory_low=low == "1")  # fmt: skip

    async def fail_unplaced(self, machine_id: str, reason: str) -> bool:
        """``created`` -> ``failed`` with ``reason``, only if no provisioner took it yet."""
        now = datetime.now(UTC).isoformat()
        script = self._fail_unplaced.on(self._redis)
        args = [S.CREATED.value, S.FAILED.value, reason, now]
        return bool(await script(keys=[self._k.k_machine(machine_id)], args=args))
