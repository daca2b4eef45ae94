"""``StreamTransport``: an ``HttpTransport`` whose requests go over asyncio's own streams, one
HTTP/1.1 connection each, instead of aiohttp, which a command imports only for a WebSocket.

Why: importing aiohttp costs a process about half a second of CPU on the reference host (two
TLS contexts made at import, its resolver, attrs, yarl), three times what the rest of
``fleet machines list`` costs, for a command that sends one request. The CLI makes this
transport; a long-lived client (the SDK's users, the services) keeps aiohttp's pooled
connections. WebSockets (terminals, tunnels) are ``HttpTransport``'s, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Mapping

import h11

from base.http1 import next_event, response_head
from fleet.client.http_head import (
    HEAD_LIMIT as _HEAD_LIMIT,
    READ_SIZE as _READ,
    content_type,
    joined_headers,
    request_headers,
)
from fleet.client.transport import (
    Answer,
    ConnectionFailed,
    Headers,
    HttpTransport,
    RequestBody,
    StreamCut,
    Timeout,
    unreachable_message,
)


def _headers(head: h11.Response) -> Headers:
    return Headers(joined_headers(head))


class _Body:
    """An answer's body as h11 frames it (its length, its chunks, or the connection's end),
    read through a buffer so that lines can be taken out of it."""

    def __init__(
        self, http: h11.Connection, reader: asyncio.StreamReader, read_s: float | None
    ) -> None:
        self._http = http
        self._reader = reader
        self._read_s = read_s
        self._buf = bytearray()
        self._done = False

    async def _fill(self) -> bool:
        """More of the body into the buffer; False at its end."""
        if self._done:
            return False
        try:
            async with asyncio.timeout(self._read_s):
                event = await next_event(self._http, self._reader, _READ)
        except (h11.ProtocolError, ConnectionError) as exc:
            raise StreamCut(f"the answer broke off: {exc!r}") from None
        if isinstance(event, h11.Data):
            self._buf += event.data
            return True
        self._done = True  # its end (EndOfMessage)
        return False

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read(self) -> bytes:
        while await self._fill():
            pass
        return self._take(len(self._buf))

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        start = 0
        while (at := self._buf.find(separator, start)) < 0:
            if max_size is not None and len(self._buf) > max_size:
                raise ValueError(f"no {separator!r} in the first {max_size} bytes")
            start = max(0, len(self._buf) - len(separator) + 1)
            if not await self._fill():
                return self._take(len(self._buf))
        return self._take(at + len(separator))

    async def readline(self) -> bytes:
        return await self.readuntil(b"\n")

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        while self._buf or await self._fill():
            while len(self._buf) < n and await self._fill():
                pass
            yield self._take(n)


class _Answer:
    def __init__(self, status: int, headers: Headers, body: _Body) -> None:
        self.status, self.headers, self.content = status, headers, body

    @property
    def content_type(self) -> str:
        return content_type(self.headers)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    async def read(self) -> bytes:
        return await self.content.read()


class StreamTransport(HttpTransport):
    """``HttpTransport``'s requests on asyncio's streams (``http://``, and ``https://`` with the
    system's certificates); its WebSockets and ``session`` through aiohttp, imported then."""

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
        read_ahead: int | None = None,  # a hint; this transport buffers what it reads
    ) -> AsyncIterator[Answer]:
        timeout = timeout or Timeout(total=self._timeout_s)
        url = urllib.parse.urlsplit(self.url)
        target = (url.path or "") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        async with asyncio.timeout(timeout.total):
            reader, writer = await self._connect(url, timeout.connect)
            http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_HEAD_LIMIT)
            head = h11.Request(method=method, target=target,
                               headers=request_headers(url, headers, body))  # fmt: skip
            # Sent while the answer is awaited, as aiohttp does: a gateway that refuses an
            # upload answers (and closes) before it has read the body, and its answer is the
            # request's, not the broken send.
            sending = asyncio.create_task(_send(http, writer, head, body))
            try:
                answer = await _answer_head(http, reader, sending)
                yield _Answer(answer.status_code, _headers(answer),
                              _Body(http, reader, timeout.read))  # fmt: skip
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                writer.close()

    async def _connect(
        self, url: urllib.parse.SplitResult, connect_s: float | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        tls = url.scheme == "https"
        ssl = _tls_context() if tls else None
        try:
            async with asyncio.timeout(connect_s):
                return await asyncio.open_connection(
                    url.hostname, url.port or (443 if tls else 80), ssl=ssl, limit=_HEAD_LIMIT
                )
        except OSError as exc:
            raise ConnectionFailed(unreachable_message(self.url, exc)) from None


def _tls_context() -> object:
    import ssl  # here: a context loads the system's certificates, which http:// does without

    return ssl.create_default_context()


async def _answer_head(
    http: h11.Connection, reader: asyncio.StreamReader, sending: asyncio.Task[None]
) -> h11.Response:
    """The answer's head; if none comes, why: the send's failure when it broke off."""
    try:
        return await response_head(http, reader, _READ)
    except (h11.ProtocolError, ConnectionError) as exc:
        if sending.done() and not sending.cancelled() and sending.exception() is not None:
            await sending  # its ConnectionFailed
        raise ConnectionFailed(f"no answer came: {exc!r}", sent=True) from None


async def _send(
    http: h11.Connection, writer: asyncio.StreamWriter, head: h11.Request, body: RequestBody
) -> None:
    try:
        writer.write(http.send(head) or b"")
        if isinstance(body, bytes):
            writer.write(http.send(h11.Data(data=body)) or b"")
        elif body is not None:
            async for chunk in body:
                if chunk:
                    writer.write(http.send(h11.Data(data=chunk)) or b"")
                    await writer.drain()  # an upload's chunks are not all held in memory
        writer.write(http.send(h11.EndOfMessage()) or b"")
        await writer.drain()
    except ConnectionError as exc:
        raise ConnectionFailed(f"the connection broke while sending: {exc}", sent=True) from None
