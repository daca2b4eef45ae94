"""Best-effort exclusive locks across processes in Redis (``store.locks``): SET NX PX with a
token of our own, so that the TTL frees a lock whose holder died and a release only ever deletes
our own."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from base.retry import Backoff, retry_until
from controlplane import store_scripts

if TYPE_CHECKING:
    from controlplane.store import Store

#: A lock another holds is asked for again from 10 ms on, at most every 200 ms.
_LOCK_BACKOFF = Backoff(base=0.01, cap=0.2)


class LockRecords:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._release = store_scripts.BoundScript(store_scripts.UNLOCK)
        self._renew = store_scripts.BoundScript(store_scripts.RENEW)

    @contextlib.asynccontextmanager
    async def hold(self, name: str, ttl_s: float = 60.0) -> AsyncIterator[bool]:
        """The lock for the block, if free; yields whether we hold it."""
        token = secrets.token_hex(8)
        held = await self.take(name, token, ttl_s)
        try:
            yield held
        finally:
            if held:
                await self.release(name, token)

    @contextlib.asynccontextmanager
    async def hold_waiting(self, name: str, ttl_s: float, wait_s: float) -> AsyncIterator[bool]:
        """``hold``, tried again (the one backoff rule, from 10 ms) for up to ``wait_s`` while
        another holds it; yields whether we hold it in the end."""
        token = secrets.token_hex(8)
        held = await retry_until(lambda: self.take(name, token, ttl_s),
                                 backoff=_LOCK_BACKOFF, budget_s=wait_s)  # fmt: skip
        try:
            yield held
        finally:
            if held:
                await self.release(name, token)

    async def take(self, name: str, token: str, ttl_s: float) -> bool:
        """``hold`` in two halves, for a holder that releases it in another step (the
        provisioner frees it with its status change, ``stages.advance(release=...)``)."""
        key = self._store.keys.k_lock(name)
        return bool(await self._store.redis.set(key, token, nx=True, px=int(ttl_s * 1000)))

    async def release(self, name: str, token: str) -> None:
        """Only if ``token`` still holds it."""
        script = self._release.on(self._store.redis)
        await script(keys=[self._store.keys.k_lock(name)], args=[token])

    async def renew(self, name: str, token: str, ttl_s: float) -> bool:
        """Keep a lock taken with ``take`` for another ``ttl_s``; whether ``token`` still held
        it (a holder that lost it, its TTL run out, must stop acting as its holder)."""
        script = self._renew.on(self._store.redis)
        keys = [self._store.keys.k_lock(name)]
        return bool(await script(keys=keys, args=[token, int(ttl_s * 1000)]))
