"""Best-effort exclusive locks across processes in Redis (``store.locks``): SET NX PX with a
token of our own, so that the TTL frees a lock whose holder died and a release only ever deletes
our own.

A token names its holder process (``token``: this kernel's boot id, the pid and its start time),
so that a lock whose holder died is taken over at once by a process of the same host, rather
than when its TTL runs out: a machine's ``provision:`` lock is held for up to ten minutes
through a checkpoint, and a provisioner killed meanwhile (a restart) left every pause, resume,
stop or start of that machine waiting that long, its event's handler giving up first and failing
the machine. A holder on another host (another boot id) is never judged: only its TTL frees it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from base import procinfo
from base.retry import Backoff, retry_until
from controlplane.store import scripts as store_scripts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: A lock another holds is asked for again from 10 ms on, at most every 200 ms.
_LOCK_BACKOFF = Backoff(base=0.01, cap=0.2)


_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def holder() -> str:
    """This process, as a lock's token names it: ``<boot id>/<pid>/<start ticks>``."""
    boot = _BOOT_ID.read_text().strip() if _BOOT_ID.exists() else "-"
    pid = os.getpid()
    return f"{boot}/{pid}/{procinfo.start_ticks(pid)}"


def holder_gone(token: str) -> bool:
    """The token names a process of this host's kernel that has ended (never a holder of
    another host, nor a token that names none)."""
    _, _, named = token.partition("@")
    boot, _, rest = named.partition("/")
    pid, _, ticks = rest.partition("/")
    if not pid.isdigit() or not ticks.isdigit() or not _BOOT_ID.exists():
        return False
    if boot != _BOOT_ID.read_text().strip():
        return False
    return not procinfo.is_alive(int(pid), int(ticks))


class LockRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._release = store_scripts.BoundScript(store_scripts.UNLOCK)
        self._renew = store_scripts.BoundScript(store_scripts.RENEW)
        self._take_over = store_scripts.BoundScript(store_scripts.TAKE_OVER)
        self._holder = holder()

    def token(self) -> str:
        """A new token of this process's (its holder named: ``holder``)."""
        return f"{secrets.token_hex(8)}@{self._holder}"

    @contextlib.asynccontextmanager
    async def hold(self, name: str, ttl_s: float = 60.0) -> AsyncIterator[bool]:
        """The lock for the block, if free; yields whether we hold it."""
        token = self.token()
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
        token = self.token()
        held = await retry_until(lambda: self.take(name, token, ttl_s),
                                 backoff=_LOCK_BACKOFF, budget_s=wait_s)  # fmt: skip
        try:
            yield held
        finally:
            if held:
                await self.release(name, token)

    async def take(self, name: str, token: str, ttl_s: float) -> bool:
        """``hold`` in two halves, for a holder that releases it in another step (the
        provisioner frees it with its status change, ``stages.advance(release=...)``); a lock
        whose holder has ended on this host (its token from ``token``) is taken over."""
        key = self._keys.k_lock(name)
        if await self._redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
            return True
        held_by = await self._redis.get(key)
        if held_by is None or not holder_gone(str(held_by)):
            return False
        script = self._take_over.on(self._redis)
        return bool(await script(keys=[key], args=[held_by, token, int(ttl_s * 1000)]))

    async def release(self, name: str, token: str) -> None:
        """Only if ``token`` still holds it."""
        script = self._release.on(self._redis)
        await script(keys=[self._keys.k_lock(name)], args=[token])

    async def renew(self, name: str, token: str, ttl_s: float) -> bool:
        """Keep a lock taken with ``take`` for another ``ttl_s``; whether ``token`` still held
        it (a holder that lost it, its TTL run out, must stop acting as its holder)."""
        script = self._renew.on(self._redis)
        keys = [self._keys.k_lock(name)]
        return bool(await script(keys=keys, args=[token, int(ttl_s * 1000)]))
