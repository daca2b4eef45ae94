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

from contracts.errors import NotFound
from contracts.ids import new_token_id
from contracts.models import AccessToken
from services.common.store import Store

PREFIX = "fleet_"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


class TokenStore:
    def __init__(self, store: Store) -> None:
        self._records = store.tokens

    async def create(self, name: str, instance_id: str | None) -> tuple[AccessToken, str]:
        secret = new_secret()
        token = AccessToken(id=new_token_id(), name=name, instance_id=instance_id,
                            created_at=datetime.now(UTC))  # fmt: skip
        await self._records.add(token, hash_token(secret))
        return token, secret

    async def resolve(self, secret: str) -> AccessToken | None:
        """The live token whose secret this is, or None."""
        if not secret.startswith(PREFIX):
            return None
        digest = hash_token(secret)
        token_id = await self._records.id_by_digest(digest)
        if token_id is None:
            return None
        record = await self._records.get(token_id)
        if record is None or record.token.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.digest, digest):
            return None
        return record.token

    async def get(self, token_id: str) -> AccessToken:
        record = await self._records.get(token_id)
        if record is None:
            raise NotFound(f"token {token_id} not found")
        return record.token

    async def list(self, instance_id: str | None = None) -> list[AccessToken]:
        tokens = [await self.get(i) for i in await self._records.ids()]
        return [t for t in tokens if instance_id is None or t.instance_id == instance_id]

    async def revoke(self, token_id: str) -> bool:
        """Revoke a token (it stops working at once); False if it already was."""
        record = await self._records.get(token_id)
        if record is None:
            raise NotFound(f"token {token_id} not found")
        if record.token.revoked_at is not None:
            return False
        await self._records.mark_revoked(record)
        return True
