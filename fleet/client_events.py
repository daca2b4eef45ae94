"""``FleetClient``'s methods for GET /events' own authentication (a mixin: ``client.py`` is full).

A browser's EventSource cannot send an Authorization header, so it first asks for a ticket
(``events.ticket``) and opens ``GET /events?ticket=...`` with it; the ticket is good for one
stream, for seconds, and never the long-lived token itself. The CLI and this client send the
bearer header instead and need no ticket; ``events_ticket`` is here for programs that hand a
stream URL to something that cannot send headers.
"""

from __future__ import annotations

from typing import Protocol

from contracts import gateway_rpc as g
from contracts.jsonrpc import MethodSpec, NoParams, P, R


class _Calls(Protocol):
    url: str

    async def call(
        self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
    ) -> R: ...


class EventsClient:
    async def events_ticket(self: _Calls) -> g.EventsTicket:
        """A single-use ticket for ``GET /events?ticket=...`` (valid ``expires_in_s`` seconds)."""
        return await self.call(g.EVENTS_TICKET, NoParams())

    async def events_url(self: _Calls, machine_id: str | None = None) -> str:
        """A ``GET /events`` URL that needs no header, with a fresh ticket in it."""
        ticket = (await EventsClient.events_ticket(self)).ticket
        machine = f"&machineId={machine_id}" if machine_id else ""
        return f"{self.url}/events?ticket={ticket}{machine}"
