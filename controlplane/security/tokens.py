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
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import NotFound
from contracts.gateway.people import User
from contracts.ids import new_token_id
from contracts.models import AccessToken
from controlplane.store import Store, token_record

PREFIX = "fleet_"
#: A token's last use is written at most this often.
LAST_USED_EVERY_S = 60.0


class Resolved(NamedTuple):
    token: AccessToken
    #: Its user (None: a token of no user, or its user is gone).
    user: User | None
    roles: dict[str, str]


def is_live(token: AccessToken, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Not revoked, and not past its expiry (by ``clock``)."""
    expired = token.expires_at is not None and token.expires_at <= _now(clock)
    return token.revoked_at is None and not expired


def _now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


class TokenStore:
    """Tokens dated, and their expiries read, by ``clock``."""

    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._records = store.tokens
        self._users = store.users

    async def create(
        self,
        name: str,
        *,
        scopes: Iterable[str],
        instance_ids: list[str] | None,
        user_id: str | None,
        expires_at: datetime | None,
    ) -> tuple[AccessToken, str]:
        secret = new_secret()
        only = instance_ids[0] if instance_ids is not None and len(instance_ids) == 1 else None
        token = AccessToken(id=new_token_id(), name=name, instance_id=only,
                            created_at=_now(self._clock), scopes=sorted(set(scopes)),
                            instance_ids=instance_ids, user_id=user_id,
                            expires_at=expires_at)  # fmt: skip
        await self._records.add(token, hash_token(secret))
        return token, secret

    async def resolve(self, secret: str) -> Resolved | None:
        """The live token whose secret this is, with its user and the user's roles (one round
        trip), or None; its use is recorded (at most once a minute: a busy token would
        otherwise write on every call)."""
        found = await self.identify(secret)
        if found is None or not is_live(found.token, self._clock):
            return None
        now = _now(self._clock)
        last = found.token.last_used_at
        if last is None or (now - last).total_seconds() >= LAST_USED_EVERY_S:
            await self._records.touch(found.token.id, now)
        return found

    async def identify(self, secret: str) -> Resolved | None:
        """The token whose secret this is, live or not, with its user: whom a refused secret
        names (an expired or revoked token's holder). Nothing is recorded as a use."""
        if not secret.startswith(PREFIX):
            return None
        digest = hash_token(secret)
        found = await self._users.by_token_digest(digest)
        if found is None:
            return None
        record = token_record(dict(found.record))
        if not hmac.compare_digest(record.digest, digest):
            return None
        return Resolved(record.token, found.user, found.roles)

    async def get(self, token_id: str) -> AccessToken:
        record = await self._records.get(token_id)
        if record is None:
            raise NotFound(f"token {token_id} not found")
        return record.token

    async def list(self) -> list[AccessToken]:
        return [await self.get(i) for i in await self._records.ids()]

    async def revoke(self, token_id: str) -> bool:
        """Revoke a token (it stops working at once); False if it already was."""
        record = await self._records.get(token_id)
        if record is None:
            raise NotFound(f"token {token_id} not found")
        if record.token.revoked_at is not None:
            return False
        await self._records.mark_revoked(record)
        return True
