"""Access token records in Redis (``store.tokens``): the record, its secret's hash, the index.

The policy (what a secret looks like, which token a secret resolves to) is in
``services.common.tokens``; this is only where and how a record is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import msgspec

from contracts.models import AccessToken
from services.common.store_keys import (
    F_DIGEST,
    F_REVOKED_AT,
    K_TOKEN_HASHES,
    K_TOKENS,
    k_token,
)

if TYPE_CHECKING:
    from services.common.store import Store


class TokenRecord(msgspec.Struct, frozen=True):
    token: AccessToken
    #: The SHA-256 of the token's secret.
    digest: str


class TokenRecords:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, token: AccessToken, digest: str) -> None:
        record = {k: str(v) for k, v in msgspec.to_builtins(token).items() if v is not None}
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k_token(token.id), mapping={**record, F_DIGEST: digest})
            pipe.hset(K_TOKEN_HASHES, digest, token.id)
            pipe.zadd(K_TOKENS, {token.id: token.created_at.timestamp()})
            await pipe.execute()

    async def id_by_digest(self, digest: str) -> str | None:
        """The id of the live token whose secret hashes to ``digest`` (revoking unindexes it)."""
        return cast(str | None, await self._store.redis.hget(K_TOKEN_HASHES, digest))

    async def get(self, token_id: str) -> TokenRecord | None:
        raw = cast(dict[str, str], await self._store.redis.hgetall(k_token(token_id)))
        if not raw:
            return None
        token = msgspec.convert(raw, AccessToken, strict=False)
        return TokenRecord(token=token, digest=raw.get(F_DIGEST, ""))

    async def ids(self) -> list[str]:
        """Every token's id, oldest first."""
        return cast(list[str], await self._store.redis.zrange(K_TOKENS, 0, -1))

    async def mark_revoked(self, record: TokenRecord) -> None:
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(K_TOKEN_HASHES, record.digest)
            pipe.hset(k_token(record.token.id), F_REVOKED_AT, datetime.now(UTC).isoformat())
            await pipe.execute()
