"""Who a secret belongs to: the operator's admin token, a personal access token, or a signed-in
browser's session; and whether what a caller holds open may stay open (revocation).

A token or session is looked up with its user, and kept by this process until a change to
callers is written or announced (``caller_cache``, ``caller_notices``), for at most the
revocation round: a role change, a demotion or a disabled user takes effect at once on every
replica, and what is held open is cut by the round the change sets off.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.gateway.people import User
from contracts.people import ADMIN
from controlplane.security.tokens import Resolved, TokenStore, hash_token, is_live
from controlplane.store import Store, token_record
from services.gateway.auth.access import Caller
from services.gateway.auth.caller_cache import CallerCache

CallerResolver = Callable[[str], Awaitable[Caller | None]]
#: The caller id of the operator's admin token.
OPERATOR = "admin"
#: A session's caller id starts so (a token's with ``t-``).
SESSION_PREFIX = "ws-"


def caller_resolver(admin_token: str, tokens: TokenStore, store: Store, keep_s: float,
                    clock: Clock = SYSTEM_CLOCK) -> CallerResolver:  # fmt: skip
    """Who a bearer token belongs to: the operator's admin token, or a live access token of a
    user who is not disabled (or of no user); kept for at most ``keep_s`` of ``clock``'s time
    (``CallerCache``)."""
    cache = CallerCache[Caller](store, keep_s, clock=clock)

    async def resolve(token: str) -> Caller | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode(), admin_token.encode()):
            return Caller(token_id=OPERATOR, admin=True)
        key = hash_token(token)
        if (kept := cache.get(key)) is not None:
            return kept
        version = cache.version()
        found = await tokens.resolve(token)
        caller = token_caller(found) if found is not None else None
        if found is not None and caller is not None:
            cache.put(key, caller, version, found.token.expires_at)
        return caller

    return resolve


def token_caller(found: Resolved) -> Caller | None:
    token, user = found.token, found.user
    if token.user_id is not None and (user is None or user.disabled):
        return None
    scopes = frozenset(token.scopes)
    everywhere = token.instance_ids is None and ADMIN in scopes
    return Caller(
        token_id=token.id,
        admin=everywhere and (user is None or user.role == "admin"),
        instance_id=token.instance_id,
        user_id=token.user_id,
        role=user.role if user is not None else None,
        roles=found.roles,
        scopes=scopes,
        instance_ids=frozenset(token.instance_ids) if token.instance_ids is not None else None,
    )


async def user_caller(store: Store, caller_id: str, user: User,
                      roles: dict[str, str] | None = None) -> Caller:  # fmt: skip
    """A signed-in user, with everything their roles allow (``roles``: read here if None)."""
    if roles is None:
        roles = await store.users.roles(user.id)
    return Caller(token_id=caller_id, admin=user.role == "admin", user_id=user.id,
                  role=user.role, roles=roles)  # fmt: skip


async def current_caller(store: Store, caller_id: str) -> Caller | None:
    """The caller of this token or session as the store has it now (its user's role and
    instance roles of this moment), or None when it no longer stands: revoked, expired or ended,
    or its user disabled or gone. One round trip; nothing kept (what revocation asks)."""
    if caller_id == OPERATOR:
        return Caller(token_id=OPERATOR, admin=True)
    if caller_id.startswith(SESSION_PREFIX):
        found = await store.users.by_session(caller_id)
        if found is None or found.user is None or found.user.disabled:
            return None
        return await user_caller(store, caller_id, found.user, found.roles)
    found = await store.users.by_token_id(caller_id)
    if found is None:
        return None
    token = token_record(dict(found.record)).token
    if not is_live(token):
        return None
    return token_caller(Resolved(token, found.user, found.roles))


async def caller_is_live(store: Store, caller_id: str) -> bool:
    """The token or session still stands: not revoked, expired or ended, and its user (if any)
    is not disabled."""
    return await current_caller(store, caller_id) is not None


class CallerRound(Ticker):
    """A round over what callers hold (``tick``), every ``interval_s`` and at once on a change
    to callers written or announced here (``Store.caller_changes``)."""

    def __init__(self, store: Store, interval_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(interval_s, clock)
        self._store = store
        self._watch = contextlib.ExitStack()

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._watch.enter_context(self._store.caller_changes.watching(self.wake))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._watch.close()
        await super().__aexit__(et, e, tb)
