"""Serve an ASGI application from an aiohttp handler (HTTP only, no lifespan, no websockets).

The gateway is aiohttp; the ``mcp`` SDK's streamable-HTTP transport is an ASGI application.
This adapter lets ``/mcp`` live on the gateway's own port, behind its auth middleware, limits
and security headers, instead of on a second port users would have to reach. It maps one
aiohttp request to one ASGI ``http`` scope: ``receive`` hands out the body as it arrives,
``send`` writes the response as the app produces it (streamed: server-sent events work).
``extra`` entries go into ``scope["state"]`` (Starlette's ``request.state``): how the gateway
tells the app who the caller is.

aiohttp offers no event for a client that went away, so after the body ``receive`` waits until
the app stops asking (its response ended, or it was cancelled); a write to a gone client raises
in ``send``, which ends the app's response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Hop-by-hop headers: aiohttp frames the response itself.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})
#: Read the body in pieces of at most this many bytes.
CHUNK_BYTES = 64 * 1024


def http_scope(request: web.Request, extra: dict[str, Any]) -> Scope:
    server = request.transport.get_extra_info("sockname") if request.transport else None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(server[:2]) if isinstance(server, tuple) else None,
        "state": dict(extra),
    }


class _Exchange:
    """One request's ``receive`` and ``send``, and the aiohttp response they build."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.response: web.StreamResponse | None = None
        self._started = False
        self._ended = False

    async def receive(self) -> Message:
        content = self._request.content
        if not content.at_eof():
            chunk = await content.read(CHUNK_BYTES)
            return {"type": "http.request", "body": chunk, "more_body": not content.at_eof()}
        await asyncio.Event().wait()  # see the module's doc: until the app stops listening
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.response is not None:
                raise RuntimeError("http.response.start sent twice")
            resp = web.StreamResponse(status=int(message["status"]))
            for name, value in message.get("headers", []):
                if bytes(name).lower() not in _HOP_BY_HOP:
                    resp.headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            self.response = resp
        elif kind == "http.response.body":
            await self._body(bytes(message.get("body", b"")), bool(message.get("more_body")))

    async def _body(self, body: bytes, more: bool) -> None:
        resp = self.response
        if resp is None or self._ended:
            raise RuntimeError("http.response.body before start, or after the last one")
        if not self._started:
            if not more and "Content-Length" not in resp.headers:
                resp.content_length = len(body)
            await resp.prepare(self._request)
            self._started = True
        if body:
            await resp.write(body)
        if not more:
            self._ended = True
            await resp.write_eof()

    async def finish(self) -> web.StreamResponse:
        """The response once the app returned: an unfinished one is ended, a missing one is 500."""
        if self.response is None:
            return web.Response(status=500, text="the application sent no response")
        if not self._ended:
            await self._body(b"", more=False)
        return self.response


async def serve_asgi(
    app: AsgiApp, request: web.Request, extra: dict[str, Any] | None = None
) -> web.StreamResponse:
    exchange = _Exchange(request)
    try:
        await app(http_scope(request, extra or {}), exchange.receive, exchange.send)
    except ConnectionResetError:
        log.info("gateway.asgi_client_gone", path=request.path)
        raise
    except Exception:  # boundary: the app's bug is this request's 500, never the gateway's
        log.exception("gateway.asgi_app_failed", path=request.path)
        if exchange.response is None or not exchange.response.prepared:
            return web.Response(status=500, text="internal error")
        raise
    return await exchange.finish()
