"""``machines.ports`` and ``machines.previewTicket``, and who may open a preview.

A browser cannot put a bearer token on a navigation, and a token in a URL ends up in logs,
history and Referer headers. So the console asks ``machines.previewTicket`` (with its token)
for a single-use ticket worth seconds, and navigates to ``<preview>?fleet_ticket=<ticket>``,
on the preview listener's origin (never the console's). The gateway spends the ticket, sets
an HttpOnly, SameSite cookie scoped to the preview's host (and path) holding a second
secret (a preview session, in Redis like the tickets) and redirects to the same URL without
the ticket. Both secrets are bound to one machine's one port: a cookie for port 3000 of
machine A opens nothing else. Each request acts as the caller the store has now behind the
grant's token (``callers.current_caller``), never as the caller the ticket was issued to: a
revoked token's cookie opens nothing, and a member removed or demoted since is refused by the
same access check as any other call (and their open preview WebSockets are cut by the
revocation round).
"""

from __future__ import annotations

import hashlib
import secrets

import msgspec

from contracts.bus.events import WakeBy
from contracts.ports import MACHINES_PREVIEW_TICKET, PreviewTicket, PreviewTicketParams
from contracts.rpc.jsonrpc import handles
from controlplane.calls.daemon_client import DaemonClient
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Access, Caller, current_caller

TICKET_PREFIX = "pvt_"
COOKIE_PREFIX = "pvs_"
_MAX_SECRET = 100


class PreviewGrant(msgspec.Struct, frozen=True):
    """What a preview ticket or cookie stands for: whose token (``caller.token_id``; what else
    the caller held when the ticket was issued is not trusted later), which port."""

    caller: Caller
    machine_id: str
    port: int


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class PreviewSessions:
    def __init__(self, store: Store, *, ticket_ttl_s: float, session_ttl_s: float) -> None:
        self._store = store
        self._records = store.tickets
        self.ticket_ttl_s = ticket_ttl_s
        self.session_ttl_s = session_ttl_s

    async def issue_ticket(self, grant: PreviewGrant) -> str:
        return await self._put(TICKET_PREFIX, grant, self.ticket_ttl_s)

    async def redeem_ticket(self, ticket: str, machine_id: str, port: int) -> str | None:
        """A new cookie secret for a ticket of this machine's port; None if the ticket is
        unknown, spent, expired, for another preview, or its token no longer stands."""
        if not ticket.startswith(TICKET_PREFIX) or len(ticket) > _MAX_SECRET:
            return None
        raw = await self._records.take_preview(_digest(ticket))
        grant = await self._live(raw, machine_id, port)
        if grant is None:
            return None
        return await self._put(COOKIE_PREFIX, grant, self.session_ttl_s)

    async def caller_of_cookie(self, cookie: str, machine_id: str, port: int) -> Caller | None:
        """The caller behind a cookie of this machine's port, as the store has it now."""
        if not cookie.startswith(COOKIE_PREFIX) or len(cookie) > _MAX_SECRET:
            return None
        grant = await self._live(await self._records.get_preview(_digest(cookie)), machine_id,
                                 port)  # fmt: skip
        return None if grant is None else grant.caller

    async def _put(self, prefix: str, grant: PreviewGrant, ttl_s: float) -> str:
        secret = prefix + secrets.token_urlsafe(32)
        await self._records.put_preview(_digest(secret), msgspec.json.encode(grant).decode(),
                                        ttl_s)  # fmt: skip
        return secret

    async def _live(self, raw: str | None, machine_id: str, port: int) -> PreviewGrant | None:
        if raw is None:
            return None
        grant = msgspec.json.decode(raw, type=PreviewGrant)
        if (grant.machine_id, grant.port) != (machine_id, port):
            return None
        now = await current_caller(self._store, grant.caller.token_id)
        if now is None:
            return None
        return msgspec.structs.replace(grant, caller=now.doing(grant.caller.acting))


class PortOps:
    """``machines.previewTicket`` (``machines.ports`` is in ``ops``, on the daemon-call path
    every daemon-bound method shares)."""

    def __init__(
        self, *, access: Access, daemons: DaemonClient, store: Store, settings: Settings
    ) -> None:
        self.access = access
        self.daemons = daemons
        self.previews = PreviewSessions(
            store,
            ticket_ttl_s=settings.events_ticket_ttl_s,
            session_ttl_s=settings.preview_session_ttl_s,
        )
        self.origin = settings.preview

    @handles(MACHINES_PREVIEW_TICKET)
    async def machines_preview_ticket(self, p: PreviewTicketParams, c: Caller) -> PreviewTicket:
        # Its machine starts waking now; the preview's own request waits for it.
        await self.access.live_machine(c, p.machine_id, wake=WakeBy.PREVIEW, wait=False)
        grant = PreviewGrant(caller=c, machine_id=p.machine_id, port=p.port)
        url = self.origin.url(p.machine_id, p.port)
        return PreviewTicket(ticket=await self.previews.issue_ticket(grant), url=url,
                             expires_in_s=self.previews.ticket_ttl_s)  # fmt: skip
