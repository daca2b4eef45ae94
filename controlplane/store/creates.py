"""``machines.create`` and ``machines.rebuild`` with an idempotency key (``store.creates``):
the key is stored with the machine record in one Lua step (``store_scripts.CREATE_ONCE``), so
however many calls carry one key, at most one of them creates a machine and every other one
learns which (and which machine it replaced, for a rebuild).

The policy (what the fingerprint covers, what a mismatch answers, when ``machine.created`` is
published, what a rebuild archives) is the gateway's; here is only the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import msgspec

from contracts.models import Machine
from controlplane.store import scripts as store_scripts
from controlplane.store.keys import (
    F_ONCE_FINGERPRINT,
    F_ONCE_MACHINE,
    F_ONCE_REPLACES,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class CreateOnce(msgspec.Struct, frozen=True):
    """Who is calling (``scope``: the calling token's id), the client's key for the logical
    call, a digest of its params, and how long the key is kept."""

    scope: str
    key: str
    fingerprint: str
    ttl_s: float


class Once(msgspec.Struct, frozen=True):
    """What the key names: ``created`` when this call made the machine; ``replaces``, the
    instance's current machine when it was made (None if it had none)."""

    created: bool
    machine_id: str
    fingerprint: str
    replaces: str | None


class CreateRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys
        self._script = store_scripts.BoundScript(store_scripts.CREATE_ONCE)

    async def create(self, machine: Machine, fields: dict[str, str], once: CreateOnce) -> Once:
        """Record ``machine`` (its hash ``fields``) under ``once.key``, unless the key already
        names a machine: then nothing is written and that machine is answered."""
        keys = [
            self._k.k_create_once(once.scope, once.key),
            self._k.k_machine(machine.id),
            self._k.K_MACHINES,
            self._k.k_instance_machines(machine.instance_id),
            self._k.k_instance(machine.instance_id),
        ]
        flat = [x for pair in fields.items() for x in pair]
        ttl_ms = max(1, int(once.ttl_s * 1000))
        args = [once.fingerprint, machine.id, machine.created_at.timestamp(), ttl_ms, *flat]
        created, machine_id, fingerprint, replaces = await self._script.on(self._redis)(
            keys=keys, args=args
        )
        return Once(created=bool(created), machine_id=machine_id, fingerprint=fingerprint,
                    replaces=replaces or None)  # fmt: skip

    async def lookup(self, once: CreateOnce) -> Once | None:
        """What the key names already, if anything (read before the instance's checks, so a
        retry is answered its machine rather than "the instance already has a machine")."""
        found = await self._redis.hmget(
            self._k.k_create_once(once.scope, once.key),
            [F_ONCE_MACHINE, F_ONCE_FINGERPRINT, F_ONCE_REPLACES],
        )
        machine_id, fingerprint, replaces = cast(list[str | None], found)
        if not machine_id:
            return None
        return Once(created=False, machine_id=machine_id, fingerprint=fingerprint or "",
                    replaces=replaces or None)  # fmt: skip
