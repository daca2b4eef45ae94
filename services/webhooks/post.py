"""One webhook POST, to a checked address (``providers/webhook_target.py``).

The connection goes to the address that was checked, with the URL's name as ``Host`` and, for
https, as TLS's server name (its certificate verified against the system's CAs): nothing is
resolved here. h11 frames the request and reads the answer, and every read is bounded: the
head by ``MAX_HEAD``, the body not past ``MAX_ANSWER`` (a failure's first ``EXCERPT`` bytes are
kept to say why), the whole by the timeout. A redirect is a failure, never followed.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h11

from base.version import package_version
from providers.webhook_target import Target

MAX_HEAD = 16 * 1024
#: The most of an answer's body read; the rest is left unread (the connection is closed).
MAX_ANSWER = 64 * 1024
#: A failure's answer kept in its attempt's error.
EXCERPT = 200
_READ = 16 * 1024


class PostFailed(Exception):
    """No answer: refused, unreachable, TLS, a broken answer (the message says which)."""


@dataclass(frozen=True)
class Answer:
    status: int
    #: ``Retry-After`` in seconds, when the answer gave one.
    retry_after_s: float | None
    #: The start of the body of an answer that is no 2xx.
    excerpt: str


async def post(
    target: Target, headers: dict[str, str], body: bytes, timeout_s: float,
    tls: ssl.SSLContext | None,
) -> Answer:  # fmt: skip
    """POST ``body`` to ``target``; its answer, or PostFailed (TimeoutError past
    ``timeout_s``: the connection, the request and the answer's head together)."""
    async with asyncio.timeout(timeout_s):
        try:
            reader, writer = await asyncio.open_connection(
                str(target.address), target.port, ssl=tls if target.tls else None,
                server_hostname=target.host if target.tls else None, limit=_READ,
            )  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            raise PostFailed(f"cannot connect to {target.address}:{target.port}: "
                             f"{exc.strerror or exc}") from None  # fmt: skip
        try:
            return await _exchange(reader, writer, target, headers, body)
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            raise PostFailed(f"no answer: {type(exc).__name__}: {exc}"[:300]) from None
        finally:
            writer.close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Target,
    headers: dict[str, str], body: bytes,
) -> Answer:  # fmt: skip
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    lines = [("host", host_header(target)), ("user-agent", f"fleetd-webhooks/{package_version()}"),
             ("content-type", "application/json"), ("content-length", str(len(body))),
             ("connection", "close"), *headers.items()]  # fmt: skip
    writer.write(conn.send(h11.Request(method="POST", target=target.path, headers=lines)) or b"")
    writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    head = await _head(conn, reader)
    retry_after = _retry_after(head)
    if 200 <= head.status_code < 300:
        return Answer(head.status_code, retry_after, "")
    kept = bytearray()
    read = 0
    while read < MAX_ANSWER and len(kept) < EXCERPT:
        event = await _next(conn, reader)
        if not isinstance(event, h11.Data):
            break
        read += len(event.data)
        kept += event.data[: EXCERPT - len(kept)]
    return Answer(head.status_code, retry_after, kept.decode("utf-8", "replace"))


async def _head(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Response:
    """The answer's head, past any 1xx (an end of the connection before it: h11's error)."""
    while not isinstance(event := await _next(conn, reader), h11.Response):
        pass
    return event


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(_READ))
    return event


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
