"""The gateway's HTTP surface: POST /rpc, GET /healthz, GET /events (SSE), GET /metrics
(Prometheus), GET / (console).

/metrics needs no token, like /healthz and as Prometheus expects: it holds only aggregates
(counts by status and stage, latencies), no ids, names or secrets. A deployment that exposes the
gateway beyond its operators should keep /metrics to its scrapers at the proxy.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import msgspec
import structlog
from aiohttp import web

from contracts.errors import FleetError, PayloadTooLarge, Unauthorized
from contracts.jsonrpc import Dispatcher
from services.common.bus import Bus
from services.common.metrics import Metrics, metrics_handler
from services.common.store import Store
from services.common.tokens import TokenStore
from services.gateway.access import Caller
from services.gateway.codemode import CodemodeOps
from services.gateway.codemode_stream import add_codemode_routes
from services.gateway.sse import Streams, stream_events

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
CallerResolver = Callable[[str], Awaitable[Caller | None]]
CALLER: web.AppKey[CallerResolver] = web.AppKey("caller")
CALLER_OF_REQUEST = web.RequestKey("caller", Caller)
_JSON = "application/json"
#: Paths past /rpc and /events that need a token too: codemode's stream and MCP.
AUTHED_PREFIXES = ("/codemode/", "/mcp")


def error_response(exc: FleetError, status: int | None = None) -> web.Response:
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": None, "error": exc.to_wire()})
    resp = web.Response(body=body, status=status or exc.http_status, content_type=_JSON)
    if isinstance(exc, Unauthorized):
        resp.headers["WWW-Authenticate"] = 'Bearer realm="fleetd"'
    return resp


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    # EventSource cannot set headers: the console passes the token in the query for /events.
    return request.query.get("token", "") if request.path == "/events" else ""


def caller_resolver(admin_token: str, tokens: TokenStore) -> CallerResolver:
    """Who a bearer token belongs to: the operator's admin token, or a live access token."""

    async def resolve(token: str) -> Caller | None:
        if not token:
            return None
        if hmac.compare_digest(token.encode(), admin_token.encode()):
            return Caller(token_id="admin", admin=True)  # noqa: S106 - an id, not a secret
        found = await tokens.resolve(token)
        if found is None:
            return None
        return Caller(token_id=found.id, admin=found.instance_id is None,
                      instance_id=found.instance_id)  # fmt: skip

    return resolve


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path in ("/rpc", "/events") or request.path.startswith(AUTHED_PREFIXES):
        caller = await request.app[CALLER](bearer(request))
        if caller is None:
            return error_response(Unauthorized("missing or invalid bearer token"))
        request[CALLER_OF_REQUEST] = caller
    return await handler(request)


def make_app(
    *,
    dispatcher: Dispatcher[Caller],
    store: Store,
    bus: Bus,
    resolve_caller: CallerResolver,
    max_body_bytes: int,
    metrics: Metrics | None = None,
    codemode: CodemodeOps | None = None,
) -> web.Application:
    app = web.Application(middlewares=[auth_middleware], client_max_size=max_body_bytes)
    app[CALLER] = resolve_caller
    streams = Streams()

    async def end_streams(_: web.Application) -> None:
        streams.end_all()

    app.on_shutdown.append(end_streams)

    async def rpc(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_body_bytes:
            return error_response(_too_large(max_body_bytes))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(_too_large(max_body_bytes))
        answer = await dispatcher.handle(body, request[CALLER_OF_REQUEST])
        if answer is None:
            return web.Response(status=204)
        return web.Response(body=answer, content_type=_JSON)

    async def healthz(_: web.Request) -> web.Response:
        problems = []
        if not bus.nc.is_connected:
            problems.append("nats disconnected")
        try:
            await store.ping()
        except (OSError, ConnectionError) as exc:
            problems.append(f"redis: {exc}")
        if problems:
            return web.json_response({"ok": False, "problems": problems}, status=503)
        return web.json_response({"ok": True})

    async def events(request: web.Request) -> web.StreamResponse:
        return await stream_events(request, bus, streams, store, request[CALLER_OF_REQUEST])

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_post("/rpc", rpc)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/events", events)
    if metrics is not None:

        async def scrape(request: web.Request) -> web.Response:
            return await metrics_handler(metrics, request)

        app.router.add_get("/metrics", scrape)
    app.router.add_get("/", index)
    app.router.add_static("/static", STATIC)
    if codemode is not None:
        add_codemode_routes(app, bus, codemode, CALLER_OF_REQUEST)
    return app


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes", data={"limit": limit})


class HttpServer:
    """The aiohttp app served on host:port, as an async context manager."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, shutdown_timeout=5.0, access_log=None)
        self._host = host
        self._port = port
        self._started = False

    async def __aenter__(self) -> HttpServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._started = True
        log.info("gateway.listening", url=f"http://{self._host}:{self._port}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()
