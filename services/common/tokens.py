"""Access tokens: the secret is shown once; Redis keeps its SHA-256 and the record.

A token is 32 random bytes (URL-safe base64) behind a ``fleet_`` prefix, so a leaked one is
easy to spot in logs and scanners. Lookup is by hash; a hash is not a secret an attacker can
turn back into a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import cast

import msgspec

from contracts.errors import NotFound
from contracts.ids import new_token_id
from contracts.models import AccessToken
from services.common.store import P, Store

PREFIX = "fleet_"
K_TOKENS = P + "tokens"
K_TOKEN_HASHES = P + "tokens:by-hash"


def k_token(token_id: str) -> str:
    return f"{P}token:{token_id}"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


class TokenStore:
    def __init__(self, store: Store) -> None:
        self._r = store.redis

    async def create(self, name: str, instance_id: str | None) -> tuple[AccessToken, str]:
        secret = new_secret()
        token = AccessToken(id=new_token_id(), name=name, instance_id=instance_id,
                            created_at=datetime.now(UTC))  # fmt: skip
        record = {k: str(v) for k, v in msgspec.to_builtins(token).items() if v is not None}
        digest = hash_token(secret)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(k_token(token.id), mapping={**record, "hash": digest})
            pipe.hset(K_TOKEN_HASHES, digest, token.id)
            pipe.zadd(K_TOKENS, {token.id: token.created_at.timestamp()})
            await pipe.execute()
        return token, secret

    async def resolve(self, secret: str) -> AccessToken | None:
        """The live token whose secret this is, or None."""
        if not secret.startswith(PREFIX):
            return None
        digest = hash_token(secret)
        token_id = cast(str | None, await self._r.hget(K_TOKEN_HASHES, digest))
        if token_id is None:
            return None
        record = cast(dict[str, str], await self._r.hgetall(k_token(token_id)))
        if not record or "revokedAt" in record:
            return None
        if not hmac.compare_digest(record.get("hash", ""), digest):
            return None
        return msgspec.convert(record, AccessToken, strict=False)

    async def get(self, token_id: str) -> AccessToken:
        record = cast(dict[str, str], await self._r.hgetall(k_token(token_id)))
        if not record:
            raise NotFound(f"token {token_id} not found")
        return msgspec.convert(record, AccessToken, strict=False)

    async def list(self, instance_id: str | None = None) -> list[AccessToken]:
        ids = cast(list[str], await self._r.zrange(K_TOKENS, 0, -1))
        tokens = [await self.get(i) for i in ids]
        return [t for t in tokens if instance_id is None or t.instance_id == instance_id]

    async def revoke(self, token_id: str) -> bool:
        """Revoke a token (it stops working at once); False if it already was."""
        token = await self.get(token_id)
        if token.revoked_at is not None:
            return False
        digest = cast(str, await self._r.hget(k_token(token_id), "hash"))
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hdel(K_TOKEN_HASHES, digest)
            pipe.hset(k_token(token_id), "revokedAt", datetime.now(UTC).isoformat())
            await pipe.execute()
        return True
