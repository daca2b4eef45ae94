"""Access token records in Redis (``store.tokens``): the record, its secret's hash, the index.

The policy (what a secret looks like, which token a secret resolves to) is in
``controlplane.security.tokens``; this is only where and how a record is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec
from redis.typing import EncodableT, FieldT

from contracts.models import AccessToken
from contracts.people import ALL_SCOPES
from controlplane.store.keys import (
    F_DIGEST,
    F_INSTANCE_IDS,
    F_LAST_USED_AT,
    F_REVOKED_AT,
    F_SCOPES,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.security.caller_changes import CallerChanges
    from controlplane.store.keys import Keys


class TokenRecord(msgspec.Struct, frozen=True):
    token: AccessToken
    #: The SHA-256 of the token's secret.
    digest: str


class TokenRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys, caller_changes: CallerChanges) -> None:
        self._redis = redis
        self._caller_changes = caller_changes
        self._k = keys

    async def add(self, token: AccessToken, digest: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._k.k_token(token.id), mapping={**_to_hash(token), F_DIGEST: digest})
            pipe.hset(self._k.K_TOKEN_HASHES, digest, token.id)
            pipe.zadd(self._k.K_TOKENS, {token.id: token.created_at.timestamp()})
            await pipe.execute()

    async def migrate(self) -> int:
        """Rewrite records kept before tokens had scopes in today's shape (what ``get`` reads
        them as: every scope, on their one instance or, without one, everywhere); how many."""
        done = 0
        for token_id in await self.ids():
            key = self._k.k_token(token_id)
            if await self._redis.hexists(key, F_SCOPES):
                continue
            record = await self.get(token_id)
            if record is not None:
                await self._redis.hset(key, mapping=_to_hash(record.token))
                done += 1
        return done

    async def touch(self, token_id: str, when: datetime) -> None:
        await self._redis.hset(self._k.k_token(token_id), F_LAST_USED_AT, when.isoformat())

    async def get(self, token_id: str) -> TokenRecord | None:
        raw = cast(dict[str, Any], await self._redis.hgetall(self._k.k_token(token_id)))
        return token_record(raw) if raw else None

    async def ids(self) -> list[str]:
        """Every token's id, oldest first."""
        return cast(list[str], await self._redis.zrange(self._k.K_TOKENS, 0, -1))

    async def mark_revoked(self, record: TokenRecord) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._k.K_TOKEN_HASHES, record.digest)
            pipe.hset(self._k.k_token(record.token.id), F_REVOKED_AT, datetime.now(UTC).isoformat())
            await pipe.execute()
        await self._caller_changes.written()


def _to_hash(token: AccessToken) -> dict[FieldT, EncodableT]:
    """The record's fields as hash values: lists as JSON, the rest as text; None left out."""
    out: dict[FieldT, EncodableT] = {}
    for name, value in msgspec.to_builtins(token).items():
        if value is not None:
            out[name] = (
                msgspec.json.encode(value).decode() if isinstance(value, list) else str(value)
            )
    return out


def token_record(raw: dict[str, Any]) -> TokenRecord:
    """A token's record from its hash (one kept before tokens had scopes, too)."""
    if F_SCOPES in raw:
        raw[F_SCOPES] = msgspec.json.decode(raw[F_SCOPES])
    else:  # kept before tokens had scopes: everything, as it could then
        raw[F_SCOPES] = sorted(ALL_SCOPES)
        if "instanceId" in raw:
            raw[F_INSTANCE_IDS] = [raw["instanceId"]]
    if isinstance(raw.get(F_INSTANCE_IDS), str):
        raw[F_INSTANCE_IDS] = msgspec.json.decode(raw[F_INSTANCE_IDS])
    token = msgspec.convert(raw, AccessToken, strict=False)
    return TokenRecord(token=token, digest=raw.get(F_DIGEST, ""))
