"""Events tickets in Redis (``store.tickets``): short-lived, single-use stand-ins for a token.

In Redis rather than in the gateway's memory because the ticket is issued by ``POST /rpc`` and
spent by ``GET /events``, and with several gateway replicas the two may reach different ones.
The policy (what a ticket looks like, whom it acts as) is in ``services.gateway.auth.tickets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class TicketRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys

    async def put(self, digest: str, holder: str, ttl_s: float) -> None:
        await self._redis.set(self._k.k_events_ticket(digest), holder, px=max(1, int(ttl_s * 1000)))

    async def take(self, digest: str) -> str | None:
        """The ticket's holder, and the ticket is gone (GETDEL: two takers cannot both win)."""
        return cast(str | None, await self._redis.getdel(self._k.k_events_ticket(digest)))

    async def put_preview(self, digest: str, holder: str, ttl_s: float) -> None:
        await self._redis.set(self._k.k_preview(digest), holder, px=max(1, int(ttl_s * 1000)))

    async def take_preview(self, digest: str) -> str | None:
        """A preview ticket's holder, spent (GETDEL, as an events ticket)."""
        return cast(str | None, await self._redis.getdel(self._k.k_preview(digest)))

    async def get_preview(self, digest: str) -> str | None:
        """A preview cookie's holder (it stays until it expires)."""
        return cast(str | None, await self._redis.get(self._k.k_preview(digest)))
