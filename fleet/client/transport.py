"""How ``FleetClient`` reaches a gateway: the ``Transport`` protocol, and ``HttpTransport``, the
default one (aiohttp, imported when it first sends: ``import fleet.client`` does without it).

A transport carries two kinds of request. ``rpc`` is ``POST /rpc``: a JSON-RPC call's (or
batch's) body out, the answer's JSON back, which the client decodes as the method's result.
``request`` is any other route (``GET /events``, ``POST /rpc/stream``, ``POST /codemode/run``,
file uploads and downloads), whose answer is read as it comes. The client sends its bearer
secret in each request's headers, as httpx's client does, so a transport needs none.
WebSockets (terminals, tunnels) need a live socket, not a request and an answer: they are
``HttpTransport.websocket``'s, and only a client on an ``HttpTransport`` opens them.

``fleet.client.transport_mock.MockTransport`` answers with a function instead (tests, offline
tools).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from contracts.errors import ERROR_HEADER, FleetError, Unauthorized, error_from_http

if TYPE_CHECKING:
    import aiohttp

#: What a request sends: bytes, chunks as they are produced (an upload), or nothing.
RequestBody = bytes | AsyncIterable[bytes] | None


class Headers(Mapping[str, str]):
    """Header names compared as HTTP compares them, without case."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): v for k, v in (items or {}).items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class ConnectionFailed(Exception):
    """The gateway could not be reached, or the connection broke before its answer."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        #: The request may have reached the gateway (the connection broke after it was sent,
        #: not refused): it may have run, and only its answer was lost.
        self.sent = sent


class StreamCut(Exception):
    """An answer's body broke off before its end (the gateway's side went away mid-way)."""


@dataclass(frozen=True)
class Timeout:
    """A request's time limits in seconds (None: none): ``total`` for all of it, ``read``
    between two reads of the answer, ``connect`` to get a connection."""

    total: float | None = None
    read: float | None = None
    connect: float | None = None


class Body(Protocol):
    """An answer's body, read as it comes (aiohttp's ``StreamReader`` is one)."""

    async def readline(self) -> bytes: ...

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        """Up to and with ``separator`` (or the rest at the end); an error past ``max_size``."""
        ...

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...


class Answer(Protocol):
    """An HTTP answer (aiohttp's ``ClientResponse`` is one)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content_type(self) -> str: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> Body: ...
    async def read(self) -> bytes: ...


@runtime_checkable
class Transport(Protocol):
    """What ``FleetClient(..., transport=...)`` sends its requests through. ``path`` is the
    route's (``/events``), after the gateway's URL, which the transport knows."""

    async def rpc(
        self, body: bytes, *, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> bytes:
        """``POST /rpc``: the JSON-RPC answer's body (a JSON-RPC error is in it, for the
        client to raise). An HTTP refusal raises its error (``answer_of``); no answer at all,
        ``ConnectionFailed``."""
        ...

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: RequestBody = None,
        query: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,
        read_ahead: int | None = None,
    ) -> AbstractAsyncContextManager[Answer]:
        """Any other route: its answer, whatever its status, open while the block runs (a
        stream). ``ConnectionFailed`` if it cannot be sent or the connection breaks,
        ``StreamCut`` if the body breaks off. ``read_ahead``: how much of the body it may
        buffer ahead of the reader (a hint)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections; the transport may be used again after."""
        ...


def refused(url: str) -> Unauthorized:
    return Unauthorized(
        f"the gateway at {url} refused the access token (HTTP 401); set FLEET_TOKEN or pass --token"
    )


def http_error(url: str, status: int, body: bytes = b"", header: str | None = None) -> FleetError:
    """The error of any route's HTTP error answer (contracts.errors.error_from_http), in the
    same words whichever route it came from."""
    return refused(url) if status == 401 else error_from_http(status, body, header)


async def answer_of(url: str, resp: Answer) -> bytes:
    """``POST /rpc``'s answer body, or the error of an answer that is not JSON-RPC's."""
    data = await resp.read()
    if resp.status == 401:
        raise refused(url)
    if resp.content_type != "application/json":
        raise http_error(url, resp.status, b"", resp.headers.get(ERROR_HEADER))
    return data


_JSON = {"Content-Type": "application/json"}


class HttpTransport:
    """HTTP to the gateway at ``url`` over one aiohttp session, made when first needed.
    ``token``: the session's own bearer header, for requests made on ``session`` directly
    (the client sends its own with each request). ``timeout_s`` bounds a call."""

    def __init__(self, url: str, token: str = "", *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        #: Terminals and tunnels still open: closed with the transport (their connections
        #: are the session's, and a socket left to the garbage collector is a ResourceWarning).
        self._websockets: weakref.WeakSet[aiohttp.ClientWebSocketResponse] = weakref.WeakSet()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (for a route the client has no method for)."""
        if self._session is None:
            import aiohttp  # here: importing the client does without it

            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            )
        return self._session

    async def aclose(self) -> None:
        for ws in list(self._websockets):
            await ws.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def rpc(
        self, body: bytes, *, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> bytes:
        timeout = Timeout(total=timeout_s) if timeout_s else None
        async with self.request(
            "POST", "/rpc", headers={**headers, **_JSON}, body=body, timeout=timeout
        ) as resp:
            return await answer_of(self.url, resp)

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: RequestBody = None,
        query: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,
        read_ahead: int | None = None,
    ) -> AsyncIterator[Answer]:
        import aiohttp

        session = self.session
        options: dict[str, Any] = {} if read_ahead is None else {"read_bufsize": read_ahead}
        if timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(
                total=timeout.total, sock_read=timeout.read, sock_connect=timeout.connect
            )
        try:
            async with session.request(method, self.url + path, data=body, params=query,
                                       headers=dict(headers), **options) as resp:  # fmt: skip
                yield resp
        except aiohttp.ClientPayloadError as exc:
            raise StreamCut(str(exc)) from None
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable(exc) from None

    async def websocket(
        self,
        path: str,
        *,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        close_timeout_s: float = 10.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the gateway's ``path``, closed with the transport if its caller has
        not closed it; a refusal is the route's error."""
        import aiohttp

        timeout = aiohttp.ClientWSTimeout(ws_close=close_timeout_s)
        try:
            ws = await self.session.ws_connect(
                self.url + path, heartbeat=heartbeat, max_msg_size=max_msg_size, timeout=timeout
            )
        except aiohttp.WSServerHandshakeError as exc:  # refused: the error is in a header
            header = exc.headers.get(ERROR_HEADER) if exc.headers else None
            raise http_error(self.url, exc.status, b"", header) from None
        except aiohttp.ClientConnectionError as exc:
            raise self.unreachable(exc) from None
        self._websockets.add(ws)
        return ws

    def unreachable(self, exc: Exception) -> ConnectionFailed:
        import aiohttp

        return ConnectionFailed(
            unreachable_message(self.url, exc),
            sent=not isinstance(exc, aiohttp.ClientConnectorError),
        )


def unreachable_message(url: str, exc: Exception) -> str:
    return (
        f"cannot reach fleetd at {url} ({exc}); start fleetd with `./run up` "
        "(or `fleet up`), or point FLEET_URL / --url at a running gateway"
    )
