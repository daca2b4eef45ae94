"""An error as the gateway's HTTP routes answer it: the one place that turns a ``FleetError``
into an HTTP status, headers and a JSON-RPC error body, and into a WebSocket close.

The status is the error kind's own (``contracts.errors``, ``http_status``): files GET/PUT, a
session's attach, a tunnel, a preview, GET /events, codemode's stream, and ``/rpc`` refusing a
request before dispatch all answer the same error with the same status, body and words.
A browser's page load (``page_load``) of a preview, or of the sign-in's callback, gets the same
error as an HTML page (``error_page``): the same status and headers, the words escaped.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from contracts.errors import ERROR_HEADER, FleetError, PortUnreachable, Unauthorized, Unavailable
from controlplane.failover import RETRY_AFTER_MS, retry_after_s

log = structlog.get_logger(__name__)

#: A header's value stays well under what HTTP clients accept in one field (aiohttp: 8 KiB).
_MAX_HEADER = 2048
#: What a WebSocket close frame's reason may hold (RFC 6455: 125 bytes less the code's 2).
_MAX_CLOSE_REASON = 123
#: What the reader of an error page can do about it, by kind; the heading says what happened.
_PAGE_HEADINGS: dict[type[FleetError], tuple[str, str]] = {
    PortUnreachable: ("Nothing is listening on this port",
                      "Start the program that serves it in the machine, then reload this page."),
    Unauthorized: ("This preview needs you to sign in",
                   "Open it again from the console (its Open button) or with fleet machines "
                   "preview: the link it gives signs this browser in."),
}  # fmt: skip
_PAGE_DEFAULT = ("This page cannot be shown", "")
#: A page of the platform's own, on the preview's origin: it loads nothing and runs nothing.
PAGE_CSP = "default-src 'none'"


def error_response(exc: FleetError) -> web.Response:
    """The HTTP answer of a route that answers one call with ``exc``."""
    body = msgspec.json.encode({"jsonrpc": "2.0", "id": None, "error": exc.to_wire()})
    return error_answer(exc, body)


def page_load(method: str, accept: str) -> bool:
    """A browser's page load: a GET or HEAD that takes HTML. It gets an error as a page
    (``error_page``); anything else (a script's fetch, an API client) gets the JSON."""
    return method in ("GET", "HEAD") and "text/html" in accept.lower()


def error_page(exc: FleetError, *, heading: str | None = None, hint: str | None = None,
               back: tuple[str, str] | None = None) -> web.Response:  # fmt: skip
    """The answer a browser's page load gets instead of ``error_response``'s JSON: the same
    status and headers around an HTML page that says what went wrong (no script, no style).
    ``heading`` and ``hint``: the route's own words (else the error kind's); ``back``: a link
    (a path of the platform's, and its words) to where the reader goes on."""
    kind_heading, kind_hint = next(
        (h for kind, h in _PAGE_HEADINGS.items() if isinstance(exc, kind)), _PAGE_DEFAULT
    )
    heading, hint = heading or kind_heading, hint or kind_hint
    said = f"<p>{html.escape(hint)}</p>" if hint else ""
    link = (f'<p><a href="{html.escape(back[0])}">{html.escape(back[1])}</a></p>'
            if back else "")  # fmt: skip
    body = (f'<!doctype html><meta charset="utf-8"><title>{html.escape(heading)}</title>'
            f"<h1>{html.escape(heading)}</h1><p>{html.escape(exc.message)}</p>{said}{link}"
            f"<p>Error {exc.code} (HTTP {exc.http_status})</p>\n")  # fmt: skip
    resp = error_answer(exc, body.encode(), content_type="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    return resp


def error_answer(exc: FleetError, body: bytes,
                 content_type: str = "application/json") -> web.Response:  # fmt: skip
    """``exc``'s status and headers around ``body``, the JSON-RPC error answer to send (``/rpc``
    gives the request's own id, the other routes None), or ``error_page``'s page."""
    resp = web.Response(body=body, status=exc.http_status, content_type=content_type,
                        charset="utf-8" if content_type.startswith("text/") else None)  # fmt: skip
    resp.headers[ERROR_HEADER] = error_header(exc)
    if isinstance(exc, Unauthorized):
        resp.headers["WWW-Authenticate"] = 'Bearer realm="fleetd"'
    if exc.data and "retryAfterS" in exc.data:
        resp.headers["Retry-After"] = str(exc.data["retryAfterS"])
    if isinstance(exc, Unavailable):
        resp.headers["Retry-After"] = str(retry_after_s(exc))
    return resp


@web.middleware
async def always_answer(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Outermost: a request the gateway is not itself cancelling always gets an answer.

    aiohttp drops the connection without a response (the client sees ``RemoteDisconnected``)
    when a handler raises ``CancelledError``. A dependency can raise it into a handler that
    nobody cancelled: a future its client library cancelled when its connection died under a
    failover (a store reply, a bus request). Only a cancellation of this request's own task
    (the server stopping) may end it without an answer; any other is a failed dependency and is
    answered ``Unavailable``, like the failover errors it stands for.
    """
    try:
        return await handler(request)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or task.cancelling() or _started(request):
            raise
        log.warning("gateway.dependency_cancelled", path=request.path, method=request.method)
        return error_response(
            Unavailable("service temporarily unavailable (a dependency failed), retry",
                        retry_after_ms=RETRY_AFTER_MS)
        )  # fmt: skip


def _started(request: web.Request) -> bool:
    """A stream (SSE, WebSocket) whose headers went out: nothing else can be sent on it."""
    return request.writer.output_size > 0


def error_header(exc: FleetError) -> str:
    """The error object as ASCII JSON for ``ERROR_HEADER``: what a WebSocket client refused at
    the handshake can read (its body is not given to it); long messages are cut, data dropped."""
    wire = msgspec.to_builtins(exc.to_wire())
    text = json.dumps(wire, ensure_ascii=True, separators=(",", ":"))
    if len(text) <= _MAX_HEADER:
        return text
    short = {"code": exc.code, "message": exc.message[: _MAX_HEADER // 8]}
    return json.dumps(short, ensure_ascii=True, separators=(",", ":"))


def close_reason(exc: FleetError) -> bytes:
    """A WebSocket close reason naming the error as the routes' bodies do: ``<code> <message>``,
    cut to what a close frame holds (on a character boundary)."""
    text = f"{exc.code} {exc.message}".encode()
    cut = text[:_MAX_CLOSE_REASON]
    return cut.decode(errors="ignore").encode()
