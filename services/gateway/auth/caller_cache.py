"""Callers this gateway process resolved lately, so that a call by a personal access token or a
session cookie waits for no store round trip more than one by the admin token.

Deciding who a caller is reads the token's or session's record, its user and the user's roles
in one round trip; sequential calls wait for it each time (benchmark 23). An entry here stands:

- not at all once this process wrote, or was told of, anything that changes a caller
  (``Store.caller_changes``, read before the lookup the entry holds): the replica that writes
  a change (a disabled user, a revoked token, a changed role) announces it to the others
  (``caller_notices``), so it takes effect on every replica at once;
- for at most the revocation round (``FLEET_REVOCATION_ROUND_S``) all the same: a notice is
  at-most-once, and a lost one takes effect here within the round, as it cuts what is held
  open;
- not past its token's expiry, checked at each use.

Both are ``clock``'s time (a test's manual one).

A refused secret is never kept: each one asks the store (within the bad-secret rate limit).
Keys are the secret's SHA-256 (a token's digest, a session's id), never the secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from base.clock import SYSTEM_CLOCK, Clock
from controlplane.store import Store

T = TypeVar("T")
#: Entries kept at most; a full cache starts again empty (entries live half a second anyway).
MAX_ENTRIES = 10_000


class _Entry(NamedTuple, Generic[T]):
    value: T
    version: int
    at: float
    expires_at: datetime | None


class CallerCache(Generic[T]):
    def __init__(self, store: Store, ttl_s: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}

    def version(self) -> int:
        """Read before a lookup whose answer ``put`` will keep."""
        return self._store.caller_changes.version

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stale = entry.version != self._store.caller_changes.version
        if stale or self._clock.monotonic() - entry.at >= self._ttl_s or self._expired(entry):
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: str, value: T, version: int, expires_at: datetime | None = None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = _Entry(value, version, self._clock.monotonic(), expires_at)

    def _expired(self, entry: _Entry[T]) -> bool:
        expires_at = entry.expires_at
        return expires_at is not None and expires_at.timestamp() <= self._clock.now()
