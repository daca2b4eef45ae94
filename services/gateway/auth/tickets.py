"""Events tickets: ``events.ticket`` hands one out, ``GET /events?ticket=`` spends it.

EventSource cannot send an Authorization header, and a long-lived token in a URL ends up in
proxy logs, browser history and Referer headers. A ticket is worth one stream, for seconds.
"""

from __future__ import annotations

import hashlib
import secrets

import msgspec

from controlplane.store import Store
from services.gateway.auth.access import Caller
from services.gateway.auth.callers import current_caller

PREFIX = "evt_"


class _Holder(msgspec.Struct):
    """Whom a ticket was issued to, as it is kept: the caller is looked up again when it is
    spent."""

    token_id: str
    acting: str


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8", "replace")).hexdigest()


class EventTickets:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self._store = store
        self._records = store.tickets
        self.ttl_s = ttl_s

    async def issue(self, caller: Caller) -> str:
        ticket = PREFIX + secrets.token_urlsafe(32)
        holder = _Holder(token_id=caller.token_id, acting=caller.acting)
        await self._records.put(_digest(ticket), msgspec.json.encode(holder).decode(), self.ttl_s)
        return ticket

    async def redeem(self, ticket: str) -> Caller | None:
        """Whom the ticket acts as, as the store has that caller now (a role changed since the
        ticket was issued counts); None when it is unknown, spent or expired, or its token no
        longer stands."""
        if not ticket.startswith(PREFIX) or len(ticket) > 100:
            return None
        holder = await self._records.take(_digest(ticket))
        if holder is None:
            return None
        issued = msgspec.json.decode(holder, type=_Holder)
        now = await current_caller(self._store, issued.token_id)
        return None if now is None else now.doing(issued.acting)
