"""One round every ``REVOCATION_CHECK_S`` over everything a token holds open through this
gateway process: its event streams (``GET /events``) and its byte streams (terminals, file
transfers, tunnels, previews). A revoked token's streams end within a round, not when their
client lets go; each token is looked up once per round, whatever it holds.

The same round notices a lost event bus: the live subscription may then miss events, so every
event stream ends with 1501 and its client resumes from the stored events.
"""

from __future__ import annotations

from services.common.store import Store
from services.common.ticker import Ticker
from services.gateway.byte_stream_slots import ByteStreamSlots
from services.gateway.events_hub import REVOCATION_CHECK_S, EventHub, token_is_live


class RevocationTicker(Ticker):
    name = "gateway.revocation"
    failed_event = "gateway.revocation_check_failed"

    def __init__(self, store: Store, events: EventHub, slots: ByteStreamSlots,
                 interval_s: float = REVOCATION_CHECK_S) -> None:  # fmt: skip
        super().__init__(interval_s)
        self._store = store
        self._events = events
        self._slots = slots

    async def tick(self) -> None:
        if not self._events.bus_connected:
            self._events.end_all_unavailable()
        tokens = self._events.token_ids() | self._slots.token_ids()
        revoked = {t for t in tokens if not await token_is_live(self._store, t)}
        if revoked:
            self._events.end_tokens(revoked)
            await self._slots.abort_tokens(revoked)
