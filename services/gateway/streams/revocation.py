"""One round every ``FLEET_REVOCATION_ROUND_S`` over everything a token holds open through this
gateway process: its event streams (``GET /events``) and its byte streams (terminals, file
transfers, tunnels, previews), and one at once whenever this process writes or is told of a
change to callers (``Store.caller_changes``: a user disabled, a member removed or demoted, a
role changed, here or on another replica). Each token is looked up once per round, whatever it
holds, as the store has it now (``callers.current_caller``); each stream it holds ends when the
token no longer stands (revoked, expired, its user disabled) or no longer holds what opening it
took (``access.Reach``: a removed member's terminal, a viewer's tunnel), then, or within a round
when the notice was lost, not when its client lets go. Each cut is an audit entry
(``auth.streamsCut``) naming the token, its user and what it held.

The same round notices a lost event bus: the live subscription may then miss events, so every
event stream ends with 1501 and its client resumes from the stored events.
"""

from __future__ import annotations

from base.clock import SYSTEM_CLOCK, Clock
from contracts.gateway.audit import Action
from controlplane.store import Store
from services.gateway.auth import AuditLog, CallerRound, current_caller
from services.gateway.streams.events_hub import EventHub
from services.gateway.streams.slots import ByteStreamSlots


class RevocationTicker(CallerRound):
    name = "gateway.revocation"
    failed_event = "gateway.revocation_check_failed"

    def __init__(self, store: Store, events: EventHub, slots: ByteStreamSlots,
                 interval_s: float, audit: AuditLog | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        super().__init__(store, interval_s, clock)
        self._audit = audit
        self._events = events
        self._slots = slots

    async def tick(self) -> None:
        if not self._events.bus_connected:
            self._events.end_all_unavailable()
        tokens = self._events.token_ids() | self._slots.token_ids()
        current = {t: await current_caller(self._store, t) for t in sorted(tokens)}
        events = self._events.end_unreached(current)
        streams = await self._slots.abort_unreached(current)
        # A token whose streams an earlier round cut (still letting go) is not cut again.
        for token_id in sorted(events.keys() | streams.keys()):
            self._record(token_id, events.get(token_id, (0, None)), streams.get(token_id, 0))

    def _record(self, token_id: str, events: tuple[int, str | None], streams: int) -> None:
        if self._audit is None:
            return
        user_id = self._slots.user_of(token_id) or events[1]
        self._audit.record(Action.STREAMS_CUT, actor=user_id or token_id, token_id=token_id,
                           params={"eventStreams": events[0], "byteStreams": streams})  # fmt: skip
