"""An instance's secrets and its CA in Redis (``contracts/gateway/secrets.py``).

A secret's value arrives here sealed (``SecretBox``), as repo tokens and bridges' authorizations
do, and leaves sealed: only the egress proxy opens it, as it adds it to a request. Its use is
counted per secret; the first use by each machine is told apart (it goes into the audit log).

An instance's CA is made once, by whichever process needs it first (``SET NX``): its
certificate is public (it goes into the machines' trust bundles), its key is sealed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from contracts.gateway.secrets import MAX_SECRETS, SecretInfo

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class StoredSecret(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    hosts: list[str]
    header: str
    format: str
    #: The value, sealed by the platform's secret key.
    sealed: str


class StoredCa(msgspec.Struct, kw_only=True, frozen=True):
    cert_pem: str
    #: The CA's private key (PEM), sealed by the platform's secret key.
    key_sealed: str


class TooManySecrets(Exception):
    """The instance holds ``MAX_SECRETS`` already (and this is a new name)."""


_SECRET = msgspec.json.Decoder(StoredSecret)
_CA = msgspec.json.Decoder(StoredCa)
#: Adds or replaces a secret unless it is a new name past the cap: 1 set, 0 refused.
_SET = """
local new = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
if new and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1], ARGV[1] .. ':at')
redis.call('DEL', KEYS[3])
return 1
"""


class SecretRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis: Any = redis
        self._k = keys

    async def set(self, instance_id: str, secret: StoredSecret) -> None:
        """Add or replace ``secret`` (its counts start again); TooManySecrets past the cap."""
        keys = [self._k.k_secrets(instance_id), self._k.k_secret_uses(instance_id),
                self._k.k_secret_users(instance_id, secret.name)]  # fmt: skip
        done = await self._redis.eval(
            _SET, len(keys), *keys, secret.name, msgspec.json.encode(secret), MAX_SECRETS
        )
        if not int(done):
            raise TooManySecrets(instance_id)

    async def delete(self, instance_id: str, name: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._k.k_secrets(instance_id), name)
            pipe.hdel(self._k.k_secret_uses(instance_id), name, name + ":at")
            pipe.delete(self._k.k_secret_users(instance_id, name))
            removed, _, _ = await pipe.execute()
        return bool(removed)

    async def stored(self, instance_id: str) -> list[StoredSecret]:
        """Every secret of the instance, sealed, by name."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._k.k_secrets(instance_id)))
        return [_SECRET.decode(v) for _, v in sorted(raw.items())]

    async def names(self, instance_id: str) -> list[str]:
        return sorted(cast(list[str], await self._redis.hkeys(self._k.k_secrets(instance_id))))

    async def infos(self, instance_id: str) -> list[SecretInfo]:
        """What ``secrets.list`` shows: never a value."""
        stored = await self.stored(instance_id)
        uses = cast(dict[str, str], await self._redis.hgetall(self._k.k_secret_uses(instance_id)))
        return [_info(s, uses) for s in stored]

    async def used(self, instance_id: str, name: str, machine_id: str) -> bool:
        """Count one request made with ``name`` added; True if it is ``machine_id``'s first."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._k.k_secret_uses(instance_id), name, 1)
            pipe.hset(self._k.k_secret_uses(instance_id), name + ":at",
                      datetime.now(UTC).isoformat())  # fmt: skip
            pipe.sadd(self._k.k_secret_users(instance_id, name), machine_id)
            *_, added = await pipe.execute()
        return bool(added)

    async def ca(self, instance_id: str) -> StoredCa | None:
        raw = await self._redis.get(self._k.k_secrets_ca(instance_id))
        return None if raw is None else _CA.decode(raw)

    async def keep_ca(self, instance_id: str, made: StoredCa) -> StoredCa:
        """``made`` if the instance had no CA yet, else the one it has (made by another)."""
        key = self._k.k_secrets_ca(instance_id)
        if await self._redis.set(key, msgspec.json.encode(made), nx=True):
            return made
        kept = await self.ca(instance_id)
        assert kept is not None, "an instance's CA is never deleted"
        return kept


def _info(s: StoredSecret, uses: dict[str, str]) -> SecretInfo:
    at = uses.get(s.name + ":at")
    return SecretInfo(
        name=s.name, hosts=s.hosts, header=s.header, format=s.format,
        uses=int(uses.get(s.name, 0)), last_used_at=datetime.fromisoformat(at) if at else None,
    )  # fmt: skip
