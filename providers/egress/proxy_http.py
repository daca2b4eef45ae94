"""HTTP/1.1 through the egress proxy: requests read from a machine, sent on upstream with the
headers the platform sets, and the answers carried back (``providers/egress/proxy.py``).

h11 (python-hyper's sans-IO HTTP/1.1) reads and writes both sides: no hand-written parser faces
the machine or the upstream, and each message is framed again by the side that sends it, so a
request the machine frames oddly never reaches the upstream as two. Each read is bounded: a head
by ``MAX_HEAD`` (h11's ``max_incomplete_event_size``), a body by ``CHUNK`` at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import h11

from providers.egress import request as rule

MAX_HEAD = 64 * 1024
#: The most one read takes: each read costs an h11 event and a drain, and at 64 KiB that per-read
#: work was about a fifth of the CPU of an intercepted download (benchmark 31).
CHUNK = 256 * 1024
#: A machine that sends no whole request head for this long is let go.
HEAD_TIMEOUT_S = 30.0
#: Headers the proxy drops from a request it forwards: they are the proxy's, not the upstream's.
HOP_BY_HOP = frozenset({b"proxy-authorization", b"proxy-connection", b"expect"})
Headers = Sequence[tuple[bytes, bytes]]
#: Called as a request is sent with the platform's headers: the secrets' names.
OnSent = Callable[[list[str]], Awaitable[None]]
#: The headers the platform sets on a request now (lower-case names), and their secrets' names.
Lookup = Callable[[], Awaitable[tuple[dict[bytes, bytes], list[str]]]]


class ProxyHttpError(Exception):
    """A side broke HTTP/1.1 (or went away mid-message): the exchange ends."""


def server() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)


def client() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    """The next h11 event of ``conn``, reading from ``reader`` as it needs."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProxyHttpError(str(exc)) from None
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(CHUNK))


def with_headers(headers: Headers, set_: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` with each of ``set_`` (lower-case names) replacing any the machine sent."""
    kept = [(k, v) for k, v in headers if k.lower() not in set_ and k.lower() not in HOP_BY_HOP]
    return [*kept, *set_.items()]


async def body(
    src: h11.Connection, reader: asyncio.StreamReader, dst: h11.Connection,
    writer: asyncio.StreamWriter,
) -> None:  # fmt: skip
    """Carry one message's body and its end from ``src`` to ``dst``."""
    while True:
        event = await next_event(src, reader)
        if isinstance(event, h11.Data):
            writer.write(dst.send(h11.Data(data=event.data)))
            await writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            writer.write(dst.send(h11.EndOfMessage(headers=event.headers)))
            await writer.drain()
            return
        else:
            raise ProxyHttpError(f"the message ended early ({type(event).__name__})")


async def exchange(
    down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    up: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    tunnel: tuple[str, int],
    lookup: Lookup,
    on_sent: OnSent,
) -> None:
    """Carry requests from ``down`` (the machine) to ``up`` (``tunnel``'s host and port) and
    their answers back, one after the other on the same connections, until either side closes.
    Each request is held to the tunnel's authority and an ordinary method first
    (``providers/egress/request.py``: Inadmissible, nothing sent), then gets the headers
    ``lookup`` gives for it then (``on_sent`` is told their secrets' names), so that a secret
    deleted while the connection stays open goes on no later request."""
    srv, cli = server(), client()
    host = rule.host_header(tunnel)
    while True:
        try:
            request = await asyncio.wait_for(next_event(srv, down[0]), HEAD_TIMEOUT_S)
        except TimeoutError:
            return
        if not isinstance(request, h11.Request):
            return  # the machine closed (ConnectionClosed) between requests
        target = rule.admitted_target(request.method, request.target, request.headers, tunnel)
        set_headers, names = await lookup()
        if srv.they_are_waiting_for_100_continue:
            down[1].write(srv.send(h11.InformationalResponse(status_code=100, headers=[])))
        headers = with_headers(request.headers, {b"host": host, **set_headers})
        up[1].write(cli.send(h11.Request(method=request.method, target=target, headers=headers)))
        if names:
            await on_sent(names)
        await body(srv, down[0], cli, up[1])
        await answer(cli, up[0], srv, down[1])
        if srv.our_state is not h11.DONE or cli.our_state is not h11.DONE:
            return  # either side asked to close (or cannot go on): both close
        srv.start_next_cycle()
        cli.start_next_cycle()


async def answer(
    cli: h11.Connection, reader: asyncio.StreamReader, srv: h11.Connection,
    writer: asyncio.StreamWriter,
) -> None:  # fmt: skip
    """Carry the upstream's answer (after any informational ones) back to the machine."""
    while True:
        event = await next_event(cli, reader)
        if isinstance(event, h11.InformationalResponse):
            continue  # a 100 Continue was answered to the machine already
        if not isinstance(event, h11.Response):
            raise ProxyHttpError(f"the upstream sent {type(event).__name__}, not an answer")
        writer.write(srv.send(h11.Response(status_code=event.status_code, headers=event.headers,
                                           reason=event.reason)))  # fmt: skip
        break
    await body(cli, reader, srv, writer)


def refusal(status: int, reason: str, phrase: str | None = None) -> bytes:
    """A whole answer of the proxy's own (it closes the connection); ``phrase``: its status
    line's words, which clients show where they show no body (the status's own if None)."""
    body = (reason + "\n").encode()
    phrase = phrase or _REASONS.get(status, "Error")
    head = (f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


_REASONS = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Service Unavailable"}
