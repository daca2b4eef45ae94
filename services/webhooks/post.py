"""One webhook POST, to a checked address (``controlplane/policy/webhook_rules.py``).

The connection goes to the address that was checked, with the URL's name as ``Host`` and, for
https, as TLS's server name (its certificate verified against the system's CAs): nothing is
resolved here. A connection an endpoint keeps open is used again for its next POST, but only
for the same checked address (``Connections``, keyed by it). h11 frames the request and reads
the answer, and every read is bounded: the head by ``MAX_HEAD``, the body not past
``MAX_ANSWER`` (a failure's first ``EXCERPT`` bytes are kept to say why), the whole by the
timeout. A redirect is a failure, never followed.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from types import TracebackType

import h11

from base.clock import SYSTEM_CLOCK, Clock
from base.http1 import next_event, response_head
from base.tasks import cancel_and_join
from base.version import package_version
from controlplane.policy import Target

MAX_HEAD = 16 * 1024
#: The most of an answer's body read; the rest is left unread (the connection is closed).
MAX_ANSWER = 64 * 1024
#: A failure's answer kept in its attempt's error.
EXCERPT = 200
#: An idle connection is kept this long, and this many per destination.
IDLE_S = 30.0
IDLE_PER_DESTINATION = 8
#: Idle connections kept in all: past it, the one idle longest is closed.
MAX_IDLE = 256
_READ = 16 * 1024
Key = tuple[str, int, str, bool]


class PostFailed(Exception):
    """No answer: refused, unreachable, TLS, a broken answer (the message says which)."""


class _Stale(Exception):
    """A kept connection the endpoint had closed before the request reached it."""


@dataclass(frozen=True)
class Answer:
    status: int
    #: ``Retry-After`` in seconds, when the answer gave one.
    retry_after_s: float | None
    #: The start of the body of an answer that is no 2xx.
    excerpt: str


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection = field(
        default_factory=lambda: h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    )
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()

    def fresh(self, now: float) -> bool:
        """Idle less than ``IDLE_S``, and not closed by the endpoint."""
        return now - self.idle_since < IDLE_S and not self.writer.is_closing() \
            and not self.reader.at_eof()  # fmt: skip


class Connections:
    """Async context manager: the connections endpoints keep open, idle, by checked address;
    each closed once it has been idle ``IDLE_S`` (a sweep every half of it: an endpoint made,
    tested and deleted with a new address each time leaves no socket behind), the oldest
    past ``MAX_IDLE`` in all, and all when the process stops."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._idle: dict[Key, list[_Conn]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Connections:
        self._sweeper = asyncio.create_task(self._sweep(), name="webhooks-idle-sweep")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_join(self._sweeper)
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()

    @property
    def idle(self) -> int:
        """Connections kept open now."""
        return sum(len(conns) for conns in self._idle.values())

    async def _sweep(self) -> None:
        while True:
            await self._clock.sleep(IDLE_S / 2)
            self.close_stale()

    def close_stale(self) -> None:
        """Close the connections idle ``IDLE_S`` or more, or closed by their endpoint."""
        now = self._clock.monotonic()
        for key in list(self._idle):
            kept = []
            for c in self._idle[key]:
                if c.fresh(now):
                    kept.append(c)
                else:
                    c.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    def take(self, key: Key) -> _Conn | None:
        conns = self._idle.get(key, [])
        now = self._clock.monotonic()
        while conns:
            c = conns.pop()
            if c.fresh(now):
                return c
            c.close()
        self._idle.pop(key, None)
        return None

    def give(self, key: Key, c: _Conn) -> None:
        c.idle_since = self._clock.monotonic()
        conns = self._idle.setdefault(key, [])
        conns.append(c)
        while len(conns) > IDLE_PER_DESTINATION:
            conns.pop(0).close()
        if self.idle > MAX_IDLE:
            oldest = min(self._idle, key=lambda k: self._idle[k][0].idle_since)
            self._idle[oldest].pop(0).close()
            if not self._idle[oldest]:
                del self._idle[oldest]


async def post(
    target: Target, headers: dict[str, str], body: bytes, timeout_s: float,
    tls: ssl.SSLContext | None, connections: Connections | None = None,
) -> Answer:  # fmt: skip
    """POST ``body`` to ``target``; its answer, or PostFailed (TimeoutError past
    ``timeout_s``: the connection, the request and the answer's head together)."""
    key: Key = (str(target.address), target.port, target.host, target.tls)
    async with asyncio.timeout(timeout_s):
        kept = connections.take(key) if connections is not None else None
        if kept is not None:
            try:
                return await _exchange(kept, key, target, headers, body, connections)
            except _Stale:
                pass  # closed by the endpoint while idle: a new connection, once
        return await _exchange(await _connect(target, tls), key, target, headers, body,
                               connections)  # fmt: skip


async def _connect(target: Target, tls: ssl.SSLContext | None) -> _Conn:
    try:
        reader, writer = await asyncio.open_connection(
            str(target.address), target.port, ssl=tls if target.tls else None,
            server_hostname=target.host if target.tls else None, limit=_READ,
        )  # fmt: skip
    except (OSError, ssl.SSLError) as exc:
        raise PostFailed(f"cannot connect to {target.address}:{target.port}: "
                         f"{exc.strerror or exc}") from None  # fmt: skip
    return _Conn(reader, writer)


async def _exchange(
    c: _Conn, key: Key, target: Target, headers: dict[str, str], body: bytes,
    connections: Connections | None,
) -> Answer:  # fmt: skip
    reused = c.idle_since > 0
    keep = False
    try:
        lines = [("host", host_header(target)),
                 ("user-agent", f"fleetd-webhooks/{package_version()}"),
                 ("content-type", "application/json"), ("content-length", str(len(body))),
                 *headers.items()]  # fmt: skip
        if connections is None:
            lines.append(("connection", "close"))
        http = c.http
        try:
            c.writer.write(http.send(h11.Request(method="POST", target=target.path,
                                                 headers=lines)) or b"")  # fmt: skip
            c.writer.write(http.send(h11.Data(data=body)) or b"")
            c.writer.write(http.send(h11.EndOfMessage()) or b"")
            await c.writer.drain()
            head = await response_head(http, c.reader, _READ)
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
            if reused:  # nothing answered on a kept connection: it was closed while idle
                raise _Stale from None
            raise
        answer, done = await _body(http, c.reader, head)
        keep = (done and connections is not None and http.our_state is h11.DONE
                and http.their_state is h11.DONE)  # fmt: skip
        if keep:
            http.start_next_cycle()
        return answer
    except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
        raise PostFailed(f"no answer: {type(exc).__name__}: {exc}"[:300]) from None
    finally:
        if keep and connections is not None:
            connections.give(key, c)
        else:
            c.close()


async def _body(http: h11.Connection, reader: asyncio.StreamReader, head: h11.Response
                ) -> tuple[Answer, bool]:  # fmt: skip
    """The answer, and whether its body was read to its end (the connection may be kept)."""
    retry_after = _retry_after(head)
    ok = 200 <= head.status_code < 300
    kept = bytearray()
    read = 0
    while read <= MAX_ANSWER and (ok or len(kept) < EXCERPT):
        event = await next_event(http, reader, _READ)
        if isinstance(event, h11.EndOfMessage):
            return Answer(head.status_code, retry_after, _text(kept, ok)), True
        if not isinstance(event, h11.Data):
            break
        read += len(event.data)
        kept += event.data[: EXCERPT - len(kept)]
    return Answer(head.status_code, retry_after, _text(kept, ok)), False


def _text(kept: bytearray, ok: bool) -> str:
    return "" if ok else kept.decode("utf-8", "replace")


def host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.tls else 80
    return host if target.port == default else f"{host}:{target.port}"


def _retry_after(head: h11.Response) -> float | None:
    for name, value in head.headers:
        if name == b"retry-after":
            try:
                return max(0.0, float(value.decode("ascii")))
            except ValueError:  # an HTTP date: not worth a parser; the schedule stands
                return None
    return None
