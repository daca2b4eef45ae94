"""A signed-in browser's session: a random secret in an HttpOnly cookie; valkey keeps the
record under an id derived from the secret's SHA-256 (so the id names the session in logs and
revocation without being able to stand in for it), with the CSRF token every cookie-
authenticated state change must echo in ``X-CSRF-Token``. A session is kept by this process as
a token is (``caller_cache``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import CsrfRejected
from controlplane.settings import Settings
from controlplane.store import SessionRecord, Store, session_record
from services.gateway.auth import SESSION_PREFIX, Caller, CallerCache, user_caller

COOKIE = "fleet_session"
#: Beside the session's cookie, readable by the console's script and holding no secret: the
#: console asks /auth/me about a session only when the browser has one (an /auth/me with no
#: session answers 401, which a browser logs as an error on every load).
SIGNED_IN_COOKIE = "fleet_signed_in"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def session_id(secret: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:32]


class WebSessions:
    def __init__(self, store: Store, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self._users = store.users
        self._store = store
        self._ttl_s = settings.session_ttl_s
        self._cache = CallerCache[tuple[Caller, SessionRecord]](
            store, settings.revocation_round_s, clock=clock
        )

    async def start(self, user_id: str) -> str:
        """A new session for the user; its secret, for the cookie."""
        secret = secrets.token_urlsafe(32)
        record = SessionRecord(user_id=user_id, csrf=secrets.token_urlsafe(24))
        await self._users.add_session(session_id(secret), record, self._ttl_s)
        return secret

    async def get(self, secret: str) -> tuple[Caller, SessionRecord] | None:
        """The caller and record of a live session of a user who is not disabled."""
        if not secret or len(secret) > 100:
            return None
        sid = session_id(secret)
        if (kept := self._cache.get(sid)) is not None:
            return kept
        version = self._cache.version()
        found = await self._users.by_session(sid)  # one round trip: session, user, roles
        if found is None or found.user is None or found.user.disabled:
            return None
        caller = await user_caller(self._store, sid, found.user, found.roles)
        answer = caller, session_record(found.record)
        self._cache.put(sid, answer, version)
        return answer

    async def end(self, secret: str, record: SessionRecord) -> None:
        await self._users.end_session(session_id(secret), record.user_id)

    def set_cookie(self, request: web.Request, resp: web.StreamResponse, secret: str) -> None:
        resp.set_cookie(COOKIE, secret, httponly=True, samesite="Lax", path="/",
                        secure=request.secure, max_age=int(self._ttl_s))  # fmt: skip
        resp.set_cookie(SIGNED_IN_COOKIE, "1", samesite="Lax", path="/", secure=request.secure,
                        max_age=int(self._ttl_s))  # fmt: skip


def del_cookies(resp: web.StreamResponse) -> None:
    """The session's cookie and its marker gone from the browser."""
    resp.del_cookie(COOKIE, path="/")
    resp.del_cookie(SIGNED_IN_COOKIE, path="/")


def check_csrf(request: web.Request, record: SessionRecord, own_origin: str) -> None:
    """A cookie-authenticated request that changes something carries the session's CSRF token;
    a cookie-authenticated WebSocket comes from the console's own origin (a browser sends no
    header of ours on one, but always its Origin)."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        if request.headers.get("Origin") != own_origin:
            raise CsrfRejected("a WebSocket signed in by cookie must come from the console")
        return
    if request.method in _SAFE:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, record.csrf):
        raise CsrfRejected(f"a cookie-authenticated {request.method} needs its {CSRF_HEADER}")
