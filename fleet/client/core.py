"""What every method of ``FleetClient`` runs on: its transport, the headers each request
carries, and ``call``, one request sent again while the gateway answers ``Unavailable`` (its
store or bus is failing over), with the one backoff rule, a bounded number of times
(``base.retry.Retries``, as every retry loop of fleetd); and the resumes of a cut event stream.

``ClientCore`` is the generated methods (``GatewayMethods``) over this plumbing; the
hand-written methods (``calls.py``, ``streams.py``, ``transfer.py``) are functions of a
``ClientCore``, which ``FleetClient`` (``client.py``) binds as its own.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType
from typing import TYPE_CHECKING, Self

from base.retry import Backoff, Retries
from contracts.errors import FleetError, Unavailable
from contracts.rpc.jsonrpc import LazyLogger, MethodSpec, P, R, decode_result, encode_call
from fleet import DEFAULT_URL
from fleet.client.generated import GatewayMethods
from fleet.client.transport import ConnectionFailed, HttpTransport, Transport, http_error

if TYPE_CHECKING:
    import aiohttp

log = LazyLogger(__name__)  # structlog only once it logs: a command's start-up does without

#: Tries of one call while the gateway answers Unavailable: with waits of at least its
#: ``retryAfterMs`` (1 s) doubling from 0.25 s up to 5 s, about 20 s in all, longer than a
#: sentinel failover (2 s to call the primary down, then an election) or a JetStream election.
UNAVAILABLE_TRIES = 8
#: The one backoff rule's waits (``base.retry``) between a call's tries, and between a cut
#: stream's resumes.
_UNAVAILABLE = Backoff(base=0.25, cap=5.0)
_CUT = Backoff(base=0.1, cap=2.0)


class ClientCore(GatewayMethods):
    """A client's plumbing and its generated methods (``FleetClient`` is this and its
    hand-written methods)."""

    #: Tries per call while the gateway answers Unavailable (1: no retry).
    unavailable_tries: int = UNAVAILABLE_TRIES
    #: How many times this client sent a call again after Unavailable or a cut answer (for
    #: tests and tools).
    unavailable_retries: int = 0

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str = "",
        *,
        timeout_s: float = 60.0,
        transport: Transport | None = None,
    ) -> None:
        """``transport``: what the requests go through (``fleet.client.transport``); by default an
        ``HttpTransport`` to ``url`` whose calls wait ``timeout_s`` at most. The client closes
        it when it closes."""
        self.url = url.rstrip("/")
        self._token = token
        if transport is None:
            transport = HttpTransport(url, token, timeout_s=timeout_s)
        self.transport: Transport = transport
        #: What each request carries (a transport needs no credentials of its own).
        self.headers = {"Authorization": f"Bearer {token}"}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.aclose()

    def _http(self, what: str) -> HttpTransport:
        if not isinstance(self.transport, HttpTransport):
            raise TypeError(f"{what} needs an HttpTransport, not {type(self.transport).__name__}")
        return self.transport

    async def websocket(
        self,
        path: str,
        *,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        close_timeout_s: float = 10.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the gateway's ``path`` (a terminal, a tunnel), closed with the
        client if its caller has not closed it; a refusal is the route's error. Over HTTP
        only: a socket is not a request and an answer (``HttpTransport.websocket``)."""
        return await self._http("a WebSocket").websocket(
            path, heartbeat=heartbeat, max_msg_size=max_msg_size, close_timeout_s=close_timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The ``HttpTransport``'s aiohttp session (for a route the client has no method for)."""
        return self._http("session").session

    def http_error(self, status: int, body: bytes = b"", header: str | None = None) -> FleetError:
        """The error of any route's HTTP error answer (contracts.errors.error_from_http), in
        the same words whichever route it came from."""
        return http_error(self.url, status, body, header)

    async def _call_once(
        self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
    ) -> R:
        """One request (``call`` sends it again while the gateway answers Unavailable)."""
        body = encode_call(spec, params, next(self._ids))
        answer = await self.transport.rpc(body, headers=self.headers, timeout_s=timeout_s)
        return decode_result(spec, answer)

    async def call(
        self,
        spec: MethodSpec[P, R],
        params: P,
        *,
        timeout_s: float | None = None,
        resend_cut: bool = False,
    ) -> R:
        """Any gateway method through its spec in ``contracts.gateway.rpc``: ``params`` its
        params Struct (sent camelCase), the answer decoded as its result type. Answered
        Unavailable, the call is sent again after a wait (up to ``unavailable_tries`` in all):
        a call the gateway ran partly before its store or bus failed may then run twice.
        ``resend_cut``, for params that make running twice harmless (``machines.create`` and
        ``machines.rebuild`` with an ``idempotencyKey``): also sent again when the connection
        broke after the request went out (the gateway may have run it, and only its answer
        was lost)."""
        waits = Retries(_UNAVAILABLE, tries=self.unavailable_tries)
        while True:
            try:
                return await self._call_once(spec, params, timeout_s=timeout_s)
            except Unavailable as exc:
                wait = waits.next_wait_s()
                if wait is None:
                    raise
                wait = max(exc.retry_after_ms / 1000, wait)
                log.info("client.retry_unavailable", method=spec.name, attempt=waits.failed,
                         wait_s=wait)  # fmt: skip
            except ConnectionFailed as exc:
                wait = waits.next_wait_s() if resend_cut and exc.sent else None
                if wait is None:
                    raise
                log.info("client.retry_cut", method=spec.name, attempt=waits.failed, wait_s=wait)
            self.unavailable_retries += 1
            await asyncio.sleep(wait)


#: How many times in a row GET /events may be cut mid-stream before events() gives up.
STREAM_CUTS = 6


class StreamResumes:
    """When ``FleetClient.events`` resumes a stream that ended early, counted in a row (an
    event read resets them): a cut (~5 s of waits in all before it gives up), or 1501 from a
    gateway whose bus is failing over (``event: error``, or a 503 answer to the reopened
    stream), waited for as ``call`` waits for it."""

    def __init__(self, client: ClientCore) -> None:
        self.client = client
        self.reset()

    def reset(self) -> None:
        self._cuts = Retries(_CUT, tries=STREAM_CUTS + 1)
        self._unavailables = Retries(_UNAVAILABLE, tries=self.client.unavailable_tries)

    async def cut(self) -> None:
        wait = self._cuts.next_wait_s()
        if wait is None:
            raise FleetError(f"GET /events was cut {self._cuts.failed} times in a row") from None
        await asyncio.sleep(wait)

    async def unavailable(self, exc: Unavailable) -> None:
        wait = self._unavailables.next_wait_s()
        if wait is None:
            raise exc
        self.client.unavailable_retries += 1
        wait = max(exc.retry_after_ms / 1000, wait)
        log.info("client.events_resume_unavailable", attempt=self._unavailables.failed,
                 wait_s=wait)  # fmt: skip
        await asyncio.sleep(wait)
