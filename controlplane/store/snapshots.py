"""Snapshot records (machines.snapshot) in Redis (``store.snapshots``): one JSON value each, and
each instance's set of ids. The snapshot itself is on its machine's host (providers/local/homes.py).

A snapshot's place under its instance's cap is taken before its copy starts (``reserve``) and
counted until it is saved or released: checked after the copy, as many calls at once as the
copy is slow would each pass the check. A reservation lapses on its own (a gateway that died
mid-copy): what the copy left on disk then belongs to no record, and the host's sweeper takes it.

A machine made from a snapshot holds it while it is being made (``use``, before its
``machine.created``): its provisioner copies the snapshot after that event, and a memory
snapshot's image is restored at the machine's start. A delete first marks the snapshot
(``mark_deleting``), at once with a look at its machines: refused while one is being made,
and no machine takes it once marked. A use ends with its machine's making (``BEING_MADE``),
read at the delete: nothing has to let it go, so a crash midway leaves no hold behind, and a
machine left half made holds it until archived.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import msgspec

from contracts.errors import Conflict, NotFound
from contracts.gateway.fork import Snapshot
from contracts.status import COMING_UP, NOT_PROVISIONED
from controlplane.store.keys import F_STATUS

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
#: A machine made from a snapshot is being made until it is up (ready) or never will be: not
#: provisioned yet (its copy), or on its way up (a memory snapshot's restore is its start; a
#: create delivered again reads the snapshot's record).
BEING_MADE = NOT_PROVISIONED | COMING_UP
#: KEYS: the snapshot's record, its uses, its delete mark; ARGV: the machine. 1 if the use is
#: taken, 0 if the snapshot is gone or being deleted.
USE = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
#: KEYS: the snapshot's uses, its delete mark; ARGV: the machines' hash key prefix, then the
#: statuses of a machine being made. {machine, status} of one being made from it (nothing
#: marked), or {} once marked; a use whose machine is made (or gone) is let go on the way.
MARK_DELETING = f"""
local making = {{}}
for i = 2, #ARGV do making[ARGV[i]] = true end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = redis.call('HGET', ARGV[1] .. id, '{F_STATUS}')
  if s and making[s] then return {{id, s}} end
  redis.call('SREM', KEYS[1], id)
end
redis.call('SET', KEYS[2], '1')
return {{}}
"""


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

    async def use(self, snapshot_id: str, machine_id: str) -> None:
        """``machine_id`` is made from the snapshot: it holds it while it is being made (see
        the module). NotFound if the snapshot is gone or being deleted."""
        k = self._keys
        keys = [k.k_snapshot(snapshot_id), k.k_snapshot_uses(snapshot_id),
                k.k_snapshot_deleting(snapshot_id)]  # fmt: skip
        if not int(await self._redis.eval(USE, len(keys), *keys, machine_id)):
            raise NotFound(f"snapshot {snapshot_id} not found (deleted, or being deleted)")

    async def mark_deleting(self, snapshot_id: str) -> None:
        """The snapshot marked as being deleted: no machine is made from it from now on (a
        delete cut short is done again by the next). Conflict, naming the machine, while one is
        being made from it: nothing is marked."""
        k = self._keys
        keys = [k.k_snapshot_uses(snapshot_id), k.k_snapshot_deleting(snapshot_id)]
        making = [s.value for s in sorted(BEING_MADE)]
        held = await self._redis.eval(MARK_DELETING, len(keys), *keys, k.k_machine(""), *making)
        if held:
            machine_id, status = (str(v) for v in held)
            raise Conflict(
                f"snapshot {snapshot_id} is being copied into machine {machine_id} ({status}): "
                "delete it once that machine is ready or failed, or archive that machine",
                data={"machineId": machine_id, "status": status},
            )

    async def forget(self, snapshot: Snapshot) -> None:
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.k_snapshot(snapshot.id), k.k_snapshot_uses(snapshot.id),
                        k.k_snapshot_deleting(snapshot.id))  # fmt: skip
            pipe.srem(k.k_instance_snapshots(snapshot.instance_id), snapshot.id)
            await pipe.execute()
