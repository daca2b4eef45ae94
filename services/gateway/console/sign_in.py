"""Sign-in with OpenID Connect and the browser's session: ``GET /auth/login``,
``GET /auth/callback`` (the redirect URI), ``POST /auth/logout``, ``GET /auth/me``
(``{id, email, role}``), ``GET /auth/config`` (whether sign-in is on), and the device flow
for ``fleet login``: ``POST /auth/device`` (the codes to show), ``POST /auth/device/token``
(``{pending: true}`` until the user approved, then a personal access token of theirs).

A sign-in's ``state`` is bound to the browser that started it (a short-lived cookie) and kept
server-side with its nonce and PKCE verifier until the callback takes it, once. A user is
found by the provider's subject; else, by an email the provider vouches for (``email_verified``,
or, with ``FLEET_OIDC_TRUST_EMAIL``, a provider that never sends that claim),
a user an admin made with that email and who never signed in is bound to the subject, once
(a user's subject never changes: another account with their email is refused); else one is
made. The groups claim maps to platform roles (``FLEET_OIDC_ADMIN_GROUPS``, ``_AUDITOR_GROUPS``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog
from aiohttp import web

from contracts.errors import FleetError, Forbidden, NotFound, SignInStateRejected, Unauthorized
from contracts.gateway.audit import Action
from contracts.gateway.people import User
from contracts.people import ALL_SCOPES
from controlplane.security.tokens import TokenStore
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import AuditLog, Caller, origin_of
from services.gateway.console.oidc import OidcClient, pkce_pair, rejected
from services.gateway.console.web_sessions import COOKIE, WebSessions, check_csrf, del_cookies
from services.gateway.errors_http import error_page, error_response, page_load
from services.gateway.rpc import add_user

log = structlog.get_logger(__name__)

STATE_COOKIE = "fleet_signin"
#: How long a sign-in may take at the provider.
SIGNIN_TTL_S = 600.0
#: The ``error`` codes a provider sends back to the redirect URI (OAuth 2.0, RFC 6749 4.1.2.1;
#: OpenID Connect Core 3.1.2.6): one of these is named; anything else, which anyone can put in
#: a forged callback, is not echoed on the platform's page or in its audit log.
PROVIDER_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
    "invalid_scope", "server_error", "temporarily_unavailable", "interaction_required",
    "login_required", "account_selection_required", "consent_required", "invalid_request_uri",
    "invalid_request_object", "request_not_supported", "request_uri_not_supported",
    "registration_not_supported",
})  # fmt: skip
UNDEFINED_ERROR = "an error code OAuth does not define"
#: What a person whose sign-in was refused reads beside why, and where they go on.
REFUSED_HINT = ("Sign in again from the console. If it is refused again, ask the platform's "
                "admin: every refused sign-in is in its audit log.")  # fmt: skip
BACK_TO_SIGN_IN = ("/", "Back to sign-in")


class _Pending(msgspec.Struct, frozen=True):
    nonce: str
    verifier: str


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def public_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _groups(value: str) -> set[str]:
    return {g.strip() for g in value.split(",") if g.strip()}


def verified_email(claims: dict[str, Any], *, trust_unsaid: bool = False) -> str:
    """The claims' email, which the provider must vouch for: ``email_verified`` true (a
    string "true" too, as some providers send it). Anyone may set an unverified one to
    another's, so it finds, binds and names no user. ``trust_unsaid``
    (``FLEET_OIDC_TRUST_EMAIL``): a claim the provider leaves out (or null) counts as true,
    for a provider that never sends it (Microsoft Entra ID); one it sends is never
    overruled, so a provider that says false is still refused."""
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise rejected("claims", "no email claim")
    verified = claims.get("email_verified")
    if verified is None and trust_unsaid:
        log.info("auth.email_trusted", reason="email_verified not sent")
        return email
    if verified is not True and verified != "true":
        raise rejected("email-unverified", f"the provider does not vouch for {email} "
                                           "(email_verified is not true)")  # fmt: skip
    return email


class SignIn:
    def __init__(self, store: Store, settings: Settings, oidc: OidcClient | None,
                 sessions: WebSessions, tokens: TokenStore | None = None) -> None:  # fmt: skip
        self.store = store
        self.tokens = tokens or TokenStore(store)
        self.settings = settings
        self.oidc = oidc
        self.sessions = sessions
        self.redirect_uri = public_url(settings) + "/auth/callback"

    def _client(self) -> OidcClient:
        if self.oidc is None:
            raise NotFound("sign-in is not configured (FLEET_OIDC_ISSUER)")
        return self.oidc

    async def begin(self) -> tuple[str, str]:
        """(the provider's authorization URL, the state to bind to this browser)."""
        client = self._client()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        record = msgspec.json.encode(_Pending(nonce=nonce, verifier=verifier))
        await self.store.users.put_signin(_digest(state), record, SIGNIN_TTL_S)
        return await client.authorize_url(self.redirect_uri, state, nonce, challenge), state

    async def finish(self, state: str, browser_state: str, code: str) -> User:
        """The user the provider vouches for: ``state`` taken once, and this browser's."""
        client = self._client()
        raw = await self.store.users.take_signin(_digest(state)) if state else None
        if raw is None:
            raise SignInStateRejected("unknown, used or expired sign-in state")
        if not hmac.compare_digest(state, browser_state):
            raise SignInStateRejected("this sign-in was not started by this browser")
        pending = msgspec.json.decode(raw, type=_Pending)
        tokens = await client.exchange(code, pending.verifier, self.redirect_uri)
        return await self.user_of(await client.claims(tokens, pending.nonce))

    async def user_of(self, claims: dict[str, Any]) -> User:
        """The user these (validated) claims name, made on first sign-in; their role follows
        their groups."""
        subject = f"{claims['iss']} {claims['sub']}"
        users = self.store.users
        user_id = await users.id_by_subject(subject)
        user = await users.get(user_id) if user_id is not None else None
        if user is None:
            email = verified_email(claims, trust_unsaid=self.settings.oidc_trust_email)
            user = await self._bind(email, subject)
            if user is None:
                return await self._make(claims, email, subject)
        if user.disabled:
            raise Forbidden(f"user {user.email} is disabled")
        role, from_groups = self._role(claims.get("groups"), user)
        if (user.role, user.role_from_groups) != (role, from_groups):
            user.role, user.role_from_groups = role, from_groups  # type: ignore[assignment]
            await users.put(user)
        return user

    async def _bind(self, email: str, subject: str) -> User | None:
        """The user an admin made with ``email``, bound to ``subject`` now; None: no user has
        that email. One already bound to another subject is never rebound."""
        user_id = await self.store.users.id_by_email(email)
        user = await self.store.users.get(user_id) if user_id is not None else None
        if user is None:
            return None
        if user.disabled:
            raise Forbidden(f"user {user.email} is disabled")
        if user.subject is not None or not await self.store.users.bind_subject(user.id, subject):
            raise rejected("account-bound", f"{email} is a user who signs in with another "
                                            "account of the provider")  # fmt: skip
        log.info("auth.account_bound", user_id=user.id)
        user.subject = subject
        return user

    async def _make(self, claims: dict[str, Any], email: str, subject: str) -> User:
        role, from_groups = self._role(claims.get("groups"), None)
        made = await add_user(self.store, email, str(claims.get("name", "")), role, subject)
        if from_groups:
            made.role_from_groups = True
            await self.store.users.put(made)
        return made

    async def device_begin(self) -> dict[str, Any]:
        """A device sign-in (``fleet login``): the codes and where the user enters them."""
        got = await self._client().device_start()
        ttl = float(got.get("expires_in", SIGNIN_TTL_S))
        await self.store.users.put_signin(_digest(got["device_code"]), b"device", ttl)
        return {"deviceCode": got["device_code"], "userCode": got["user_code"],
                "verificationUri": got["verification_uri"],
                "verificationUriComplete": got.get("verification_uri_complete"),
                "interval": got.get("interval", 5), "expiresIn": ttl}  # fmt: skip

    async def device_finish(self, device_code: str) -> dict[str, Any] | None:
        """Once the user approved: a personal access token of theirs (every scope their roles
        allow, the default expiry); None while they have not yet."""
        client, digest = self._client(), _digest(device_code)
        if not device_code or not await self.store.users.signin_exists(digest):
            raise SignInStateRejected("unknown, used or expired device code")
        tokens = await client.device_poll(device_code)
        if tokens is None:
            return None
        if await self.store.users.take_signin(digest) is None:  # another poll won
            raise SignInStateRejected("this device code was used already")
        user = await self.user_of(await client.claims(tokens, None))
        ttl = timedelta(seconds=self.settings.token_default_ttl_s)
        token, secret = await self.tokens.create(
            "fleet login", scopes=ALL_SCOPES, instance_ids=None, user_id=user.id,
            expires_at=datetime.now(UTC) + ttl,
        )  # fmt: skip
        log.info("auth.device_signed_in", user_id=user.id, token_id=token.id)
        return {"id": token.id, "token": secret, "email": user.email}

    def _role(self, groups: object, user: User | None) -> tuple[str, bool]:
        """The user's platform role after this sign-in, and whether their groups gave it. A
        role the groups gave and no longer give falls back to member; one an admin set with
        users.setRole stays."""
        names = set(groups) if isinstance(groups, list) else set()
        if names & _groups(self.settings.oidc_admin_groups):
            return "admin", True
        if names & _groups(self.settings.oidc_auditor_groups):
            return "auditor", True
        if user is None or user.role_from_groups:
            return "member", False
        return user.role, False


def add_auth_routes(app: web.Application, signin: SignIn, bearer_caller: Any,
                    audit: AuditLog | None = None) -> None:  # fmt: skip
    """``bearer_caller(request)``: the caller of the request's bearer token, or None. Each
    sign-in, refused or not, and each sign-out is an entry of ``audit`` (refused ones within
    the bounds of ``AuditLog.refused``)."""
    routes = _AuthRoutes(signin, bearer_caller, audit)
    app.router.add_get("/auth/login", routes.login)
    app.router.add_get("/auth/callback", routes.callback)
    app.router.add_post("/auth/logout", routes.logout)
    app.router.add_get("/auth/me", routes.me)
    app.router.add_get("/auth/config", routes.config)
    app.router.add_post("/auth/device", routes.device)
    app.router.add_post("/auth/device/token", routes.device_token)


class _AuthRoutes:
    """The handlers of ``/auth/*`` (``add_auth_routes``)."""

    def __init__(self, signin: SignIn, bearer_caller: Any, audit: AuditLog | None) -> None:
        self.signin = signin
        self.sessions = signin.sessions
        self.bearer_caller = bearer_caller
        self.audit = audit

    def _note(self, request: web.Request, action: str, *, actor: str | None = None,
              error: FleetError | None = None) -> None:  # fmt: skip
        audit = self.audit
        if audit is None:
            return
        origin = origin_of(request)
        if error is not None and actor is None:  # anyone can forge a callback: bounded
            audit.refused(action, error, origin=origin)
        else:
            audit.record(action, actor=actor or "anonymous", error=error, origin=origin)

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            url, state = await self.signin.begin()
        except FleetError as exc:
            return error_response(exc)
        resp = _redirect(url)
        resp.set_cookie(STATE_COOKIE, state, httponly=True, samesite="Lax", path="/auth/",
                        secure=request.secure, max_age=int(SIGNIN_TTL_S))  # fmt: skip
        return resp

    async def callback(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            if "error" in q:
                said = q["error"] if q["error"] in PROVIDER_ERRORS else UNDEFINED_ERROR
                raise SignInStateRejected(f"the identity provider refused the sign-in ({said})")
            user = await self.signin.finish(q.get("state", ""),
                                            request.cookies.get(STATE_COOKIE, ""),
                                            q.get("code", ""))  # fmt: skip
        except FleetError as exc:
            log.info("auth.signin_refused", error=exc.message, code=exc.code)
            self._note(request, Action.SIGN_IN, error=exc)
            if page_load(request.method, request.headers.get("Accept", "")):
                return error_page(exc, heading="Sign-in refused", hint=REFUSED_HINT,
                                  back=BACK_TO_SIGN_IN)  # fmt: skip
            return error_response(exc)
        secret = await self.sessions.start(user.id)
        log.info("auth.signed_in", user_id=user.id)
        self._note(request, Action.SIGN_IN, actor=user.id)
        resp = _redirect("/")
        self.sessions.set_cookie(request, resp, secret)
        resp.del_cookie(STATE_COOKIE, path="/auth/")
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        secret = request.cookies.get(COOKIE, "")
        found = await self.sessions.get(secret)
        if found is None:
            gone = web.json_response({"signedOut": False})
            del_cookies(gone)  # a session ended elsewhere: its cookies too
            return gone
        try:
            check_csrf(request, found[1], public_url(self.signin.settings))
        except FleetError as exc:
            self._note(request, Action.SIGN_OUT, actor=found[0].user_id, error=exc)
            return error_response(exc)
        await self.sessions.end(secret, found[1])
        self._note(request, Action.SIGN_OUT, actor=found[0].user_id)
        resp = web.json_response({"signedOut": True})
        del_cookies(resp)
        return resp

    async def me(self, request: web.Request) -> web.StreamResponse:
        found = await self.sessions.get(request.cookies.get(COOKIE, ""))
        caller: Caller | None = found[0] if found else await self.bearer_caller(request)
        if caller is None:
            refused = error_response(Unauthorized("not signed in"))
            if COOKIE in request.cookies:  # a session that ended: the console stops asking
                del_cookies(refused)
            return refused
        body = await _me(self.signin.store, caller)
        if found is not None:
            body["csrfToken"] = found[1].csrf
        return web.json_response(body)

    async def device(self, _: web.Request) -> web.Response:
        try:
            return web.json_response(await self.signin.device_begin())
        except FleetError as exc:
            return error_response(exc)

    async def device_token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            code = body.get("deviceCode", "") if isinstance(body, dict) else ""
            done = await self.signin.device_finish(str(code))
        except FleetError as exc:
            return error_response(exc)
        except ValueError:
            return error_response(SignInStateRejected("the body is not JSON"))
        return web.json_response(done if done is not None else {"pending": True})

    async def config(self, _: web.Request) -> web.Response:
        return web.json_response({"oidc": self.signin.oidc is not None})


async def _me(store: Store, caller: Caller) -> dict[str, Any]:
    if caller.user_id is None:
        return {"id": caller.token_id, "email": "", "role": "admin" if caller.admin else "token"}
    user = await store.users.get(caller.user_id)
    email = user.email if user is not None else ""
    return {"id": caller.user_id, "email": email, "role": caller.role}


def _redirect(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url})
