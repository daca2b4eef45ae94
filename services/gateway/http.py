"""The gateway's HTTP surface: POST /rpc, GET /healthz, GET /events (SSE), GET /metrics
(Prometheus), GET / (console) on its listener; machines' pages on a listener of their own
(``services.gateway.previews.preview``), so that no preview is ever of the console's origin.

Every response of the console's listener carries the security headers (CSP, no framing, no
opener, nosniff, no referrer), and every response but the console's static files
``Cache-Control: no-store``. A client address that keeps sending bad secrets of one kind
(tokens, tickets) gets 429 with Retry-After for the next bad one of that kind; a valid token is
never refused for what its address sent before.

/metrics needs no token, like /healthz and as Prometheus expects: it holds only aggregates
(counts by status and stage, latencies), no ids, names or secrets. A deployment that exposes the
gateway beyond its operators should keep /metrics to its scrapers at the proxy.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import structlog
from aiohttp import web

from contracts.errors import CsrfRejected, FleetError, PayloadTooLarge, Unauthorized
from contracts.gateway.live import RPC_STREAM_PATH
from contracts.gateway.rpc import PUBLIC_METHODS
from contracts.gateway.sessions import ATTACH_PATH
from contracts.people import route_scope
from contracts.rpc.jsonrpc import request_method
from controlplane.failover import TRANSIENT, as_unavailable
from controlplane.process.metrics import metrics_handler
from controlplane.security.tokens import TokenStore
from services.gateway.auth import (
    AuditLog,
    BadSecrets,
    Caller,
    CallerResolver,
    EventTickets,
    origin_of,
    record_csrf,
    record_unauthenticated,
)
from services.gateway.console import COOKIE, WebSessions, add_auth_routes, check_csrf, public_url
from services.gateway.errors_http import always_answer, error_answer, error_response
from services.gateway.mcp import add_mcp_route
from services.gateway.previews import add_tunnel_route, make_preview_app
from services.gateway.streams import (
    SessionOps,
    add_codemode_routes,
    add_files_routes,
    stream_events,
    stream_rpc,
)

if TYPE_CHECKING:
    from services.gateway.compose import Gateway

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
CALLER: web.AppKey[CallerResolver] = web.AppKey("caller")
TICKETS: web.AppKey[EventTickets] = web.AppKey("tickets")
UNAUTHENTICATED: web.AppKey[BadSecrets] = web.AppKey("unauthenticated")
SESSIONS: web.AppKey[WebSessions] = web.AppKey("sessions")
#: The console's own origin, which a cookie-authenticated WebSocket must come from.
ORIGIN: web.AppKey[str] = web.AppKey("origin")
AUDIT: web.AppKey[AuditLog | None] = web.AppKey("audit")
TOKENS: web.AppKey[TokenStore] = web.AppKey("tokens")
CALLER_OF_REQUEST = web.RequestKey("caller", Caller)
#: The request came with no token at all (its caller is ``ANONYMOUS``).
ANONYMOUS_REQUEST = web.RequestKey("anonymous", bool)
_JSON = "application/json"
#: A /rpc caller without a (valid) token: it may call only the methods that reveal no data.
ANONYMOUS = Caller(token_id="anonymous", admin=False)  # noqa: S106 - an id, not a secret

#: A bearer token longer than this is not one of ours (ours are 49 characters).
_MAX_TOKEN_CHARS = 512

#: On every response. The console loads only its own scripts and styles (ES modules, no inline
#: code), so the policy can be this strict; tests/e2e/test_console.py runs it under it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    # A window a preview page opens (or that opened the console) gets no handle on it.
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: Paths past /rpc and /events that need a token too: codemode's stream, MCP, and what
#: reaches into a machine (its sessions' WebSockets).
AUTHED_PREFIXES = ("/codemode/", "/mcp", "/machines/")
#: Under AUTHED_PREFIXES, but authenticated by its own route (services.gateway.previews.preview),
#: which rate-limits bad secrets itself. ``[^/]+`` is what the router's ``{machine_id}`` matches.
_SELF_AUTHED = re.compile(r"/machines/[^/]+/tunnel/")
#: ATTACH_PATH's shape, which a ticket may open.
_ATTACH = re.compile(r"/machines/[^/]+/sessions/[^/]+/attach")


def bearer(request: web.Request) -> str:
    """The bearer token of the Authorization header; "" when there is none, or when it cannot
    be one of ours (not printable ASCII, e.g. header bytes that were not UTF-8)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        return ""
    return token if token.isascii() and token.isprintable() else ""


async def _authenticate(request: web.Request) -> Caller | None:
    """The bearer header; for GET /events also a ticket from events.ticket (never the token
    itself in the URL: URLs end up in logs, history and Referer headers)."""
    if _by_ticket(request):
        return await request.app[TICKETS].redeem(request.query["ticket"])
    token = bearer(request)
    if token or COOKIE not in request.cookies:
        return await request.app[CALLER](token)
    found = await request.app[SESSIONS].get(request.cookies[COOKIE])
    if found is None:
        return None
    try:
        check_csrf(request, found[1], request.app[ORIGIN])  # a session's state changes: CSRF
    except CsrfRejected as exc:
        await record_csrf(request.app[AUDIT], request, found[0], exc)
        raise
    return found[0]


def _by_ticket(request: web.Request) -> bool:
    """The request authenticates with a ticket: it has no bearer header, and a ticket where
    one may stand in for it."""
    return not bearer(request) and _takes_ticket(request.path) and "ticket" in request.query


def _takes_ticket(path: str) -> bool:
    """GET /events and a session's attach WebSocket: what a browser opens without headers
    (that route's shape exactly: a file whose path ends in /attach is not one)."""
    return path == "/events" or _ATTACH.fullmatch(path) is not None


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    needs_token = request.path in ("/rpc", "/events", RPC_STREAM_PATH) or (
        request.path.startswith(AUTHED_PREFIXES) and not _SELF_AUTHED.match(request.path)
    )
    if not needs_token:
        return await handler(request)
    try:
        caller = await _authenticate(request)
    except CsrfRejected as exc:
        return error_response(exc)
    except TRANSIENT as exc:  # a token is looked up in the store, which is failing over
        log.warning("gateway.auth_unavailable", path=request.path, error=repr(exc))
        return error_response(as_unavailable(exc))
    anonymous = caller is None and request.path == "/rpc" and not bearer(request)
    if anonymous:
        caller = ANONYMOUS  # no token at all: rpc() lets it call PUBLIC_METHODS only
    if caller is None:
        return await _refuse(request)
    scope = route_scope(request.method, request.path)
    caller = caller if scope is None else caller.doing(scope)
    request[CALLER_OF_REQUEST] = caller.coming_from(origin_of(request))
    request[ANONYMOUS_REQUEST] = anonymous
    return await handler(request)


async def _refuse(request: web.Request) -> web.StreamResponse:
    """401 (429 past the address's budget of bad secrets), recorded in the audit log."""
    refused = Unauthorized("missing or invalid bearer token")
    by_ticket = _by_ticket(request)
    kind = "ticket" if by_ticket else "token"
    answer = request.app[UNAUTHENTICATED].refuse(kind, request.remote or "", refused)
    token = "" if by_ticket else bearer(request)
    await record_unauthenticated(request.app[AUDIT], request, request.app[TOKENS], token,
                                 look_up=answer is refused)  # fmt: skip
    return error_response(answer)


async def _security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    resp.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        resp.headers["Cache-Control"] = "no-store"


def make_app(g: Gateway) -> GatewayApps:
    """The console's app and the preview listener's, routing requests to ``g``'s parts."""
    app = web.Application(middlewares=[always_answer, auth_middleware],
                          client_max_size=g.settings.max_body_bytes)  # fmt: skip
    app[CALLER], app[TICKETS], app[UNAUTHENTICATED] = g.resolve_caller, g.tickets, g.guesses
    app[SESSIONS], app[ORIGIN] = g.web_sessions, public_url(g.settings)
    app[AUDIT], app[TOKENS] = g.audit, g.tokens
    app.on_response_prepare.append(_security_headers)

    async def end_streams(_: web.Application) -> None:
        g.hub.end_all()

    app.on_shutdown.append(end_streams)

    async def bearer_caller(request: web.Request) -> Caller | None:
        return await g.resolve_caller(bearer(request))

    add_auth_routes(app, g.sign_in, bearer_caller, g.audit)
    _add_rpc_routes(app, g)
    _add_probe_routes(app, g)
    app.router.add_get("/", _index)
    app.router.add_static("/static", STATIC)
    add_codemode_routes(app, g.bus, g.codemode, CALLER_OF_REQUEST, g.stream_rules)
    add_mcp_route(app, g.mcp, CALLER_OF_REQUEST)
    _add_session_route(app, g.sessions)
    add_tunnel_route(app, g.tunnels, error_response, bearer)
    add_files_routes(app, g.byte_streams, CALLER_OF_REQUEST)
    previews = make_preview_app(g.tunnels, g.ports.previews, error_response, bearer,
                                g.settings.preview)  # fmt: skip
    return GatewayApps(app, previews, g.e2b.app(g.settings.e2b_port))


def _add_rpc_routes(app: web.Application, g: Gateway) -> None:
    """POST /rpc (a caller without a token: the public methods only), POST /rpc/stream and
    GET /events."""
    public = g.dispatcher.only(PUBLIC_METHODS)
    max_body_bytes = g.settings.max_body_bytes

    async def rpc(request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_body(request, max_body_bytes)
        except PayloadTooLarge as exc:
            return error_response(exc)
        caller = request[CALLER_OF_REQUEST]
        errors: list[FleetError] = []
        if request[ANONYMOUS_REQUEST]:
            method = request_method(body)
            if method is not None and method not in PUBLIC_METHODS:
                await record_unauthenticated(g.audit, request, g.tokens, "", look_up=False)
                return _unauthorized()
            # Routes nothing but PUBLIC_METHODS; a body that is no request gets its -32700 or
            # -32600 (a parse error is about the body, whoever sent it).
            answer = await public.handle(body, caller, errors)
        else:
            answer = await g.dispatcher.handle(body, caller, errors)
        if answer is None:
            return web.Response(status=204)
        if errors:  # a single request that failed: its kind's status, as on every route
            return error_answer(errors[0], answer)
        return web.Response(body=answer, content_type=_JSON)

    async def rpc_stream(request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_body(request, max_body_bytes)
            return await stream_rpc(request, g.dispatcher, request[CALLER_OF_REQUEST], body,
                                    g.stream_rules)  # fmt: skip
        except FleetError as exc:  # before the stream started: a plain JSON-RPC error
            return error_response(exc)

    async def events(request: web.Request) -> web.StreamResponse:
        return await stream_events(request, g.events, request[CALLER_OF_REQUEST])

    app.router.add_post("/rpc", rpc)
    app.router.add_post(RPC_STREAM_PATH, rpc_stream)
    app.router.add_get("/events", events)


async def _read_body(request: web.Request, max_body_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise _too_large(max_body_bytes)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_body_bytes) from None


def _add_probe_routes(app: web.Application, g: Gateway) -> None:
    """GET /healthz, and GET /metrics where the gateway has metrics."""

    async def healthz(_: web.Request) -> web.Response:
        problems = []
        if not g.bus.nc.is_connected:
            problems.append("nats disconnected")
        try:
            await g.store.ping()
        except (OSError, ConnectionError) as exc:
            problems.append(f"redis: {exc}")
        if problems:
            return web.json_response({"ok": False, "problems": problems}, status=503)
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    metrics = g.metrics
    if metrics is not None:

        async def scrape(request: web.Request) -> web.Response:
            return await metrics_handler(metrics, request)

        app.router.add_get("/metrics", scrape)


async def _index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


class GatewayApps(NamedTuple):
    console: web.Application
    #: Served on the preview listener (``FLEET_PREVIEW_HOST``:``FLEET_PREVIEW_PORT``).
    previews: web.Application
    #: Served on the E2B front's listener (``FLEET_E2B_HOST``:``FLEET_E2B_PORT``).
    e2b: web.Application


def _add_session_route(app: web.Application, sessions: SessionOps) -> None:
    async def attach(request: web.Request) -> web.StreamResponse:
        try:
            return await sessions.attach(request, request[CALLER_OF_REQUEST])
        except FleetError as exc:  # refused before the upgrade: a plain HTTP error
            return error_response(exc)

    app.router.add_get(ATTACH_PATH, attach)


def _unauthorized() -> web.Response:
    return error_response(Unauthorized("missing or invalid bearer token"))


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes", data={"limit": limit})


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port, read back from the socket), bound
    before the app is built, so that what the app says of its address is where it listens."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


class HttpServer:
    """The aiohttp app served on host:port (or on a socket already bound), as an async context
    manager."""

    def __init__(self, app: web.Application, host: str, port: int, *, name: str = "gateway",
                 sock: socket.socket | None = None) -> None:  # fmt: skip
        self._runner = web.AppRunner(app, shutdown_timeout=5.0, access_log=None)
        self._host = host
        self._port = port
        self._sock = sock
        self._name = name
        self._started = False

    async def __aenter__(self) -> HttpServer:
        await self._runner.setup()
        site: web.BaseSite
        if self._sock is not None:
            site = web.SockSite(self._runner, self._sock)
        else:
            site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._started = True
        log.info("gateway.listening", listener=self._name, url=site.name)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()
