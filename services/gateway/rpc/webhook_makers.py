"""An endpoint stands while its maker may manage it: a webhook is a stream of an instance's
events to whoever made it, and what ends a member's other streams ends it too (docs/webhooks.md).

Each round (every ``FLEET_WEBHOOK_MAKERS_ROUND_S``, and at once when this process writes or is
told of a change to callers: ``Store.caller_changes``) looks at every endpoint with a recorded
maker and disables the ones whose maker no longer stands (the token revoked or expired, the user
disabled or gone) or no longer manages the endpoint's instance (removed, demoted), each one an
audit entry (``webhooks.disabled``). A sign-in session's endpoint is its user's: signing out
ends the session, not the user's right.
"""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.gateway.audit import Action
from contracts.people import ADMIN
from controlplane.store import Store, StoredWebhook
from services.gateway.auth import (
    SESSION_PREFIX,
    AuditLog,
    Caller,
    CallerRound,
    current_caller,
    user_caller,
)

log = structlog.get_logger(__name__)


class WebhookMakers(CallerRound):
    name = "gateway.webhook_makers"
    failed_event = "gateway.webhook_makers_failed"

    def __init__(self, store: Store, interval_s: float, audit: AuditLog | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        super().__init__(store, interval_s, clock)
        self._audit = audit

    async def tick(self) -> list[str]:
        """One round: the endpoints it disabled."""
        makers: dict[tuple[str, str | None], Caller | None] = {}
        cut = []
        for hook in await self._store.webhooks.made():
            assert hook.made_by is not None  # made() answers these only
            key = (hook.made_by, hook.made_by_user)
            if key not in makers:
                makers[key] = await self._maker(hook.made_by, hook.made_by_user)
            why = _why_cut(hook, makers[key])
            if why and await self._store.webhooks.disable(hook.id, why):
                cut.append(hook.id)
                log.info("webhooks.maker_cut", webhook_id=hook.id, reason=why)
                self._record(hook, why)
        return cut

    async def _maker(self, made_by: str, user_id: str | None) -> Caller | None:
        if not made_by.startswith(SESSION_PREFIX):
            return await current_caller(self._store, made_by)
        user = await self._store.users.get(user_id) if user_id else None
        if user is None or user.disabled:
            return None
        return await user_caller(self._store, made_by, user)

    def _record(self, hook: StoredWebhook, why: str) -> None:
        if self._audit is not None:
            self._audit.record(Action.WEBHOOK_DISABLED, actor=hook.made_by_user or hook.made_by
                               or "", token_id=hook.made_by, instance_id=hook.instance_id,
                               params={"webhookId": hook.id, "reason": why})  # fmt: skip


def _why_cut(hook: StoredWebhook, maker: Caller | None) -> str | None:
    if maker is None:
        return "the token or user that made it no longer stands (revoked, expired or disabled)"
    if not maker.may(hook.instance_id, ADMIN):
        where = f"instance {hook.instance_id}" if hook.instance_id else "the platform"
        return f"the one who made it no longer manages {where}"
    return None
