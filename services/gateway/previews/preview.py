"""Previews: the gateway's preview listener, a port of its own and never the console's origin,
reverse-proxies HTTP and WebSocket to a port of a machine, through a tunnel
(``services.gateway.streams.tunnels``). A request whose ``Host`` names a machine's port
(``FLEET_PREVIEW_ORIGIN``, ``controlplane.preview_origin``) is that port's, whatever its
path; any other takes the path ``/machines/<machineId>/ports/<port>/<path>``.

Who: the bearer token of the API, or (for a browser) the preview cookie a single-use ticket
from ``machines.previewTicket`` becomes (``?fleet_ticket=`` is spent, the cookie is set,
and the browser is sent on to the same URL without it: see ``services.gateway.rpc.ports``).
Neither secret reaches the machine: the ``Authorization`` header that authenticated the request
and the platform's cookies are taken out of what is forwarded. What the program answers is
judged header by header in ``services.gateway.previews.policy``.

How: one tunnel per request, and the request goes to the program as HTTP/1.1 with
``Connection: close`` (h11 frames it, and parses the answer, which is streamed back as it
comes). A WebSocket upgrade that the program accepts (101) turns the client's connection into
raw bytes spliced to the tunnel both ways, so any WebSocket protocol, extension or subprotocol
works unchanged.
"""

from __future__ import annotations

import asyncio
import html
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple
from urllib.parse import urlencode

import h11
import structlog
from aiohttp import web
from multidict import CIMultiDict

from base.relay import relay
from contracts.bus.events import WakeBy
from contracts.errors import BadUpstream, FleetError, InvalidParams, StreamAborted, Unauthorized
from contracts.ports import (
    PREVIEW_COOKIE,
    PREVIEW_PREFIX,
    PREVIEW_TICKET_PARAM,
    TUNNEL_PATH,
    preview_prefix,
)
from controlplane.calls.byte_stream_join import PlatformStream
from controlplane.failover import TRANSIENT, as_unavailable
from controlplane.preview_origin import PreviewOrigin
from services.gateway.auth import Caller
from services.gateway.errors_http import error_page, page_load
from services.gateway.previews.policy import (
    PREVIEW_CSP,
    View,
    answer_headers,
    forwarded_cookie,
    preview_cookies,
)
from services.gateway.rpc import (
    WAKING_PAGE_AFTER_S,
    PreviewSessions,
    waking_page,
    wants_waking_page,
)
from services.gateway.streams import Tunnels, serve_tunnel_ws, target

log = structlog.get_logger(__name__)
ErrorResponse = Callable[[FleetError], web.Response]
Bearer = Callable[[web.Request], str]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Headers that belong to one hop (RFC 9110 7.6.1), never forwarded either way.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})  # fmt: skip
#: Set by the gateway for the program: whatever a client sent under these names is dropped.
_FORWARDED = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-host",
                        b"x-forwarded-proto", b"x-forwarded-prefix", b"forwarded"})  # fmt: skip
#: Bytes read from an upgraded client connection and not yet taken by the tunnel, before the
#: gateway stops reading it.
SPLICE_BUFFER = 256 * 1024


class Target(NamedTuple):
    """A preview's machine and port, and the path prefix the program's paths sit under."""

    machine_id: str
    port: int
    prefix: str


def path_target(request: web.Request) -> Target:
    """The target of ``/machines/<id>/ports/<port>/...``; its path must be as it came."""
    machine_id, port = target(request)
    prefix = preview_prefix(machine_id, port)
    if not request.raw_path.startswith(prefix):  # /ports/3000 (no slash), or an encoded path
        if request.raw_path == prefix[:-1]:
            raise web.HTTPPermanentRedirect(prefix)
        raise InvalidParams(f"the path must start with {prefix} as it is", field="path")
    return Target(machine_id, port, prefix)


async def serve_preview(request: web.Request, tunnels: Tunnels, previews: PreviewSessions,
                        bearer: str, t: Target) -> web.StreamResponse:  # fmt: skip
    ticket = request.query.get(PREVIEW_TICKET_PARAM)
    if ticket is not None:
        return await _spend_ticket(request, tunnels, previews, ticket, t)
    caller = await _caller(request, tunnels, previews, bearer, t.machine_id, t.port)
    return await serve_port(request, tunnels, caller, t, strip_authorization=bool(bearer))


async def serve_port(request: web.Request, tunnels: Tunnels, caller: Caller, t: Target, *,
                     strip_authorization: bool) -> web.StreamResponse:  # fmt: skip
    """``request`` to the program on ``t``'s port, as ``caller``: its machine woken first (a
    browser's page load gets the waking page, a script's call waits)."""
    page = wants_waking_page(request.method, request.headers.get("Accept", ""))
    woken = await tunnels.wake(caller, t.machine_id, WakeBy.PREVIEW,
                               WAKING_PAGE_AFTER_S if page else None)  # fmt: skip
    if woken is None:  # a browser's page load: it loads again, and waits on then
        return waking_page(t.machine_id, "waking")
    stream = await tunnels.open(caller, t.machine_id, t.port, wake=WakeBy.PREVIEW, woken=woken)
    try:
        return await _proxy(request, stream, t.port, t.prefix,
                            strip_authorization=strip_authorization)  # fmt: skip
    finally:
        await stream.aclose()


async def _caller(request: web.Request, tunnels: Tunnels, previews: PreviewSessions,
                  bearer: str, machine_id: str, port: int) -> Caller:  # fmt: skip
    if bearer:
        return await tunnels.bearer_caller(request, bearer)
    # Each one the browser sent: a page of another preview may have planted one beside ours.
    for cookie in preview_cookies(request.headers.getall("Cookie", [])):
        caller = await previews.caller_of_cookie(cookie, machine_id, port)
        if caller is not None:
            return caller
    refused = Unauthorized("a preview needs the bearer token, or a ticket from "
                           "machines.previewTicket (?fleet_ticket=)")  # fmt: skip
    raise tunnels.guesses.refuse("preview cookie", request.remote or "", refused)


async def _spend_ticket(request: web.Request, tunnels: Tunnels, previews: PreviewSessions,
                        ticket: str, t: Target) -> web.StreamResponse:  # fmt: skip
    machine_id, port, prefix = t
    cookie = await previews.redeem_ticket(ticket, machine_id, port)
    if cookie is None:
        refused = Unauthorized(
            "the preview ticket is unknown, spent or expired (a ticket opens one "
            "machine's one port, once): ask machines.previewTicket for another"
        )
        raise tunnels.guesses.refuse("preview ticket", request.remote or "", refused)
    rest = [(k, v) for k, v in request.query.items() if k != PREVIEW_TICKET_PARAM]
    # The path as it came (still percent-encoded: a decoded %0D%0A is no header value).
    # One leading slash: "//host/x" (or "/\\host") is another site to a browser (a preview on
    # its own origin takes any path), and the ticket's redirect must stay on this one.
    path = "/" + request.raw_path.split("?", 1)[0].lstrip("/\\")
    location = path + ("?" + urlencode(rest) if rest else "")
    resp = _reload_page(location)
    resp.set_cookie(PREVIEW_COOKIE, cookie, path=prefix, httponly=True, samesite="Strict",
                    secure=request.secure, max_age=int(previews.session_ttl_s))  # fmt: skip
    log.info("preview.opened", machine_id=machine_id, port=port)
    return resp


def _reload_page(location: str) -> web.Response:
    """Sends the browser on to ``location`` by a refresh of the preview's own page, not a
    redirect: the console is another site, and a redirect in a navigation it started stays
    cross-site, so that the SameSite=Strict cookie set here would not go with it."""
    link = html.escape(location)
    body = f'<!doctype html><title>Opening the preview</title><a href="{link}">Open</a>\n'
    headers = {"Refresh": f"0; url={location}", "Cache-Control": "no-store"}
    return web.Response(status=200, text=body, content_type="text/html", headers=headers)


Headers = list[tuple[bytes, bytes]]


def upstream_headers(request: web.Request, port: int, prefix: str, *,
                     strip_authorization: bool, upgrade: bool) -> Headers:  # fmt: skip
    """The client's headers as the program should see them."""
    listed = ",".join(request.headers.getall("Connection", [])).lower().split(",")
    drop = HOP_BY_HOP | _FORWARDED | {n.strip().encode() for n in listed if n.strip()}
    out = []
    for name, value in request.raw_headers:
        low = name.lower()
        if low in drop or (strip_authorization and low == b"authorization"):
            continue
        if low == b"cookie":
            value = forwarded_cookie(value)
            if not value:
                continue
        out.append((low, value))
    out += [(b"host", f"localhost:{port}".encode()),
            (b"x-forwarded-host", request.host.encode("latin-1", "replace")),
            (b"x-forwarded-proto", request.scheme.encode())]  # fmt: skip
    if prefix != "/":  # a path-based preview: the program's paths sit under this
        out.append((b"x-forwarded-prefix", prefix.rstrip("/").encode()))
    if request.remote:
        out.append((b"x-forwarded-for", request.remote.encode()))
    if upgrade:
        out += [(b"connection", b"Upgrade"), (b"upgrade", request.headers["Upgrade"].encode())]
    else:
        out.append((b"connection", b"close"))
        if request.body_exists and request.content_length is None:
            out.append((b"transfer-encoding", b"chunked"))
    return out


def _is_upgrade(request: web.Request) -> bool:
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "websocket"


async def _proxy(request: web.Request, stream: PlatformStream, port: int, prefix: str, *,
                 strip_authorization: bool) -> web.StreamResponse:  # fmt: skip
    upgrade = _is_upgrade(request)
    headers = upstream_headers(request, port, prefix, strip_authorization=strip_authorization,
                               upgrade=upgrade)  # fmt: skip
    conn = h11.Connection(h11.CLIENT)
    path = "/" + request.raw_path[len(prefix) :]
    await stream.send(conn.send(h11.Request(method=request.method, target=path,
                                            headers=headers)))  # fmt: skip
    if request.body_exists and not upgrade:
        async for chunk in request.content.iter_any():
            await stream.send(conn.send(h11.Data(data=chunk)) or b"")
    await stream.send(conn.send(h11.EndOfMessage()) or b"")
    head = await _response_head(conn, stream)
    view = View(prefix, port, request.host, request.raw_path.split("?", 1)[0])
    if isinstance(head, h11.InformationalResponse):  # 101: the program took the upgrade
        head = h11.InformationalResponse(status_code=101, reason=head.reason,
                                         headers=answer_headers(head.headers, view))  # fmt: skip
        return await _splice(request, conn, stream, head)
    resp = web.StreamResponse(status=head.status_code, reason=head.reason.decode() or None,
                              headers=_response_headers(head.headers, view))  # fmt: skip
    await resp.prepare(request)
    try:
        while not isinstance(event := await _next_event(conn, stream), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                await resp.write(event.data)
    except (StreamAborted, h11.ProtocolError) as exc:  # too late for an error status
        log.info("preview.cut", path=request.path, error=str(exc))
        if request.transport is not None:
            request.transport.close()  # the client sees a cut answer, not a complete one
        return resp
    await resp.write_eof()
    return resp


async def _next_event(conn: h11.Connection, stream: PlatformStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            if isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the program closed the connection mid-answer")
            return event
        conn.receive_data(await stream.receive())  # b"": the program closed its side


async def _response_head(
    conn: h11.Connection, stream: PlatformStream
) -> h11.Response | h11.InformationalResponse:
    """The answer's head: interim 1xx answers (100 Continue) are skipped, 101 is returned."""
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Response):
            return event
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return event


def _response_headers(raw: Iterable[tuple[bytes, bytes]], view: View) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in answer_headers(raw, view):
        if name not in HOP_BY_HOP:
            out.add(name.decode("latin-1"), value.decode("latin-1"))
    return out


async def _splice(request: web.Request, conn: h11.Connection, stream: PlatformStream,
                  head: h11.InformationalResponse) -> web.StreamResponse:  # fmt: skip
    """After a 101: the client's connection and the tunnel as raw bytes, both ways."""
    resp = web.StreamResponse(status=101, reason=head.reason.decode() or "Switching Protocols")
    for name, value in head.headers:
        if name not in (b"content-length", b"transfer-encoding"):
            resp.headers.add(name.decode("latin-1"), value.decode("latin-1"))
    await resp.prepare(request)
    early, _ = conn.trailing_data  # the program's first frames, read along with its 101
    if early:
        await resp.write(early)
    feed = _RawFeed(request)
    try:
        await relay(_client_to_stream(feed, stream), _stream_to_client(stream, resp),
                    until="both")  # fmt: skip
    except (ConnectionError, OSError) as exc:
        await stream.abort(f"the client left: {exc}")
    finally:
        if request.transport is not None:
            request.transport.close()
    return resp


async def _client_to_stream(feed: _RawFeed, stream: PlatformStream) -> None:
    while chunk := await feed.read():
        await stream.send(chunk)
    await stream.end()


async def _stream_to_client(stream: PlatformStream, resp: web.StreamResponse) -> None:
    async for chunk in stream:
        await resp.write(chunk)  # drains: the daemon gets credit as the client reads


class _RawFeed:
    """Takes the place of aiohttp's WebSocket parser on an upgraded connection: hands its raw
    bytes to ``read``, and stops reading the socket while ``SPLICE_BUFFER`` bytes wait."""

    def __init__(self, request: web.Request) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._ready = asyncio.Event()
        self._transport = request.transport
        self._paused = False
        request.protocol.set_parser(self)  # type: ignore[arg-type]  # duck-typed parser
        request.protocol.keep_alive(False)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._chunks.append(bytes(data))
        self._size += len(data)
        self._ready.set()
        if self._size > SPLICE_BUFFER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._ready.set()

    async def read(self) -> bytes:
        while not self._chunks:
            if self._eof:
                return b""
            self._ready.clear()
            await self._ready.wait()
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size <= SPLICE_BUFFER // 2 and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk


#: Where every preview has an origin of its own, none is shown to a browser on the listener's
#: own address, which all previews would share (and whose host the console may share).
_BY_PATH = ("by path, a preview takes the bearer token only: in a browser, open the url of "
            "machines.previewTicket (an origin of the preview's own)")  # fmt: skip


def add_tunnel_route(app: web.Application, tunnels: Tunnels, on_error: ErrorResponse,
                     bearer_of: Bearer) -> None:  # fmt: skip
    """``TUNNEL_PATH`` (a WebSocket, bearer token only) on the console's listener."""

    async def tunnel(request: web.Request) -> web.StreamResponse:
        serve = serve_tunnel_ws(request, tunnels, bearer_of(request))
        return await _guarded(request, serve, on_error)

    app.router.add_get(TUNNEL_PATH.replace("{machineId}", "{machine_id}"), tunnel)


def make_preview_app(tunnels: Tunnels, previews: PreviewSessions, on_error: ErrorResponse,
                     bearer_of: Bearer, origin: PreviewOrigin) -> web.Application:  # fmt: skip
    """The preview listener's app: previews by host name (an origin per machine's port), else
    by path; each request authenticated by itself (a preview also takes its cookie), errors as
    JSON-RPC error bodies and HTTP statuses."""

    async def preview(request: web.Request) -> web.StreamResponse:
        async def serve() -> web.StreamResponse:
            t, bearer = path_target(request), bearer_of(request)
            if origin.host is not None and not bearer:  # no browser page on a shared origin
                raise Unauthorized(_BY_PATH)
            return await serve_preview(request, tunnels, previews, bearer, t)

        return await _guarded(request, serve(), on_error)

    @web.middleware
    async def by_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        named = origin.match(request.host)
        if named is None:
            return await handler(request)
        t = Target(named[0], named[1], "/")
        serve = serve_preview(request, tunnels, previews, bearer_of(request), t)
        return await _guarded(request, serve, on_error)

    app = web.Application(middlewares=[by_host])  # first: every path is the program's
    app.on_response_prepare.append(_preview_headers)
    prefix = PREVIEW_PREFIX.replace("{machineId}", "{machine_id}")
    app.router.add_route("*", prefix.rstrip("/"), preview)
    app.router.add_route("*", prefix + "{tail:.*}", preview)
    return app


async def _preview_headers(_: web.Request, resp: web.StreamResponse) -> None:
    """The program's headers are its own; the platform adds who may frame it, and keeps the
    preview's URL out of other sites' logs unless the program says otherwise."""
    if PREVIEW_CSP not in resp.headers.getall("Content-Security-Policy", []):
        resp.headers.add("Content-Security-Policy", PREVIEW_CSP)
    resp.headers.setdefault("Referrer-Policy", "no-referrer")


async def _guarded(request: web.Request, serve: Awaitable[web.StreamResponse],
                   on_error: ErrorResponse) -> web.StreamResponse:  # fmt: skip
    """``serve``'s answer, or its error: as an HTML page to a browser's page load (the rule of
    the waking page), as ``on_error``'s JSON-RPC body to anything else."""
    if page_load(request.method, request.headers.get("Accept", "")):
        on_error = error_page
    try:
        return await serve
    except FleetError as exc:
        return on_error(exc)
    except TRANSIENT as exc:  # the store (a token, a cookie) is failing over
        return on_error(as_unavailable(exc))
    except h11.ProtocolError as exc:  # the program's answer is not HTTP/1.x
        log.info("preview.bad_answer", path=request.path, error=str(exc))
        return on_error(BadUpstream(f"the program's answer is not valid HTTP: {exc}"))
