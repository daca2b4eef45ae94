"""What of an instance takes disk on its hosts (``store.disk``), against
``FLEET_INSTANCE_DISK_MB``: its machines' homes as last measured, its paused machines' memory
images and its snapshots (a home copy, and a memory image with it), each a field of one hash.

A copy's place is taken before the copy starts, at once with the sum (``reserve``, a Lua
script: copies at once never pass the limit together), from an estimate made first (the
source's home measured, and a machine's memory limit for its memory image); once made, the
entry is set to what the copy took (``settle``), or given back (``release``). A reservation
its holder stops renewing lapses (a provisioner that died mid-copy), and is no longer counted:
the copy it left belongs to no record, and the host's sweeper removes it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from contracts.errors import DiskLimit
from controlplane.store import scripts as store_scripts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: KEYS: the instance's hash, its reservations; ARGV: now (ms), the field, its bytes, the
#: limit (bytes), how long the reservation holds (ms). -1 if reserved, else the bytes in use.
RESERVE = """
local now = tonumber(ARGV[1])
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], f)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('HDEL', KEYS[1], ARGV[2])
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
if used + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return used end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
return -1
"""
#: How long a place is held unless its holder renews it (``renew``): a host's copy renews its
#: place while it runs, so a place whose provisioner died (a restart mid-copy) lapses this soon,
#: where it would otherwise be counted for as long as the slowest copy may take.
RESERVATION_S = 60.0
#: What is left of an instance's figures once its places that lapsed are given back. KEYS: the
#: instance's hash, its reservations; ARGV: now (ms).
USED = """
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[1], f)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
MB = 1 << 20


def home(machine_id: str) -> str:
    return f"home:{machine_id}"


def paused(machine_id: str) -> str:
    return f"paused:{machine_id}"


def image(snapshot_id: str) -> str:
    """A snapshot's (its home copy and any memory image), or a memory fork's image."""
    return f"image:{snapshot_id}"


class DiskLedger:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys
        self._used = store_scripts.BoundScript(USED)

    def _keys(self, instance_id: str) -> list[str]:
        k = self._k
        return [k.k_instance_disk(instance_id), k.k_instance_disk_reservations(instance_id)]

    async def reserve(self, instance_id: str, field: str, need: int, limit_mb: int,
                      what: str, hold_s: float = RESERVATION_S) -> None:  # fmt: skip
        """Hold ``need`` bytes as ``field`` (replacing what it held), or DiskLimit naming the
        figures; ``limit_mb`` 0: no limit (held all the same, to be counted)."""
        limit = limit_mb * MB if limit_mb > 0 else 1 << 62
        used = await self._redis.eval(
            RESERVE, 2, *self._keys(instance_id), int(time.time() * 1000), field, max(0, need),
            limit, int(hold_s * 1000),
        )  # fmt: skip
        if int(used) >= 0:
            raise DiskLimit(
                f"instance {instance_id} uses {_mb(int(used))} MB of disk of its "
                f"{limit_mb} MB (FLEET_INSTANCE_DISK_MB), and {what} needs {_mb(need)} MB more: "
                "delete a snapshot, or archive a machine",
                data={"limitMb": limit_mb, "usedMb": _mb(int(used)), "neededMb": _mb(need)},
            )

    async def settle(self, instance_id: str, field: str, took: int) -> None:
        """``field`` holds what its copy took, for good (until ``forget``)."""
        key, reservations = self._keys(instance_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, field, str(max(0, took)))
            pipe.zrem(reservations, field)
            await pipe.execute()

    async def forget(self, instance_id: str, *fields: str) -> None:
        """What ``fields`` held is free (a reservation given back, a copy removed)."""
        key, reservations = self._keys(instance_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, *fields)
            pipe.zrem(reservations, *fields)
            await pipe.execute()

    async def renew(self, instance_id: str, field: str, hold_s: float = RESERVATION_S) -> None:
        """A place still held (its copy runs on): held ``hold_s`` more, if it still is."""
        reservations = self._keys(instance_id)[1]
        until = int((time.time() + hold_s) * 1000)
        await self._redis.zadd(reservations, {field: until}, xx=True)

    async def places(self, instance_id: str) -> list[str]:
        """The fields that are places held (a copy under way, or one whose holder died and whose
        place has not lapsed yet), not figures measured."""
        reservations = self._keys(instance_id)[1]
        got = await self._redis.zrangebyscore(reservations, int(time.time() * 1000), "+inf")
        return [str(f) for f in got]

    async def used(self, instance_id: str) -> dict[str, int]:
        """Each field and its bytes (reservations not lapsed included)."""
        script = self._used.on(self._redis)
        flat = await script(keys=self._keys(instance_id), args=[int(time.time() * 1000)])
        return {str(f): int(v) for f, v in zip(flat[::2], flat[1::2], strict=True)}


def _mb(n: int) -> int:
    return -(-n // MB)
