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
from collections.abc import AsyncIterable, AsyncIterator, Mapping

from fleet.client.transport import (
    Answer,
    ConnectionFailed,
    HttpTransport,
    RequestBody,
    StreamCut,
    Timeout,
    unreachable_message,
)

#: The longest head (status line and headers) of an answer read.
_HEAD_LIMIT = 64 * 1024


class _Headers(dict[str, str]):
    """An answer's headers, looked up whatever their case (HTTP's names are)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Body:
    """An answer's body as it comes: by its Content-Length, its chunks, or up to the end of
    the connection; read through a buffer, so lines can be taken out of it."""

    def __init__(self, reader: asyncio.StreamReader, headers: _Headers, read_s: float | None):
        self._reader = reader
        self._read_s = read_s
        self._buf = bytearray()
        chunked = "chunked" in (headers.get("transfer-encoding") or "").lower()
        length = headers.get("content-length")
        #: Bytes left of a sized body; None: chunked or to the end.
        self._left = None if chunked or length is None else int(length)
        self._chunked = chunked
        self._done = self._left == 0

    async def _fill(self) -> bool:
        """More of the body into the buffer; False at its end."""
        if self._done:
            return False
        async with asyncio.timeout(self._read_s):
            data = await self._next()
        if not data:
            self._done = True
            return False
        self._buf += data
        return True

    async def _next(self) -> bytes:
        try:
            if self._chunked:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:  # the last chunk: trailers, if any, up to an empty line
                    while await self._reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    return b""
                return (await self._reader.readexactly(size + 2))[:size]  # and its CRLF
            if self._left is None:
                return await self._reader.read(256 * 1024)
            data = await self._reader.readexactly(min(self._left, 256 * 1024))
            self._left -= len(data)
            self._done = self._left == 0
            return data
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            raise StreamCut(f"the answer broke off: {exc!r}") from None

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
    def __init__(self, status: int, headers: _Headers, body: _Body) -> None:
        self.status, self.headers, self.content = status, headers, body

    @property
    def content_type(self) -> str:  # aiohttp's default where there is none
        value = self.headers.get("content-type") or "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

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
            try:
                await _send(writer, method, target, url.netloc, headers, body)
                status, answer_headers = await _head(reader)
                yield _Answer(status, answer_headers, _Body(reader, answer_headers, timeout.read))
            finally:
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


async def _send(
    writer: asyncio.StreamWriter, method: str, target: str, host: str,
    headers: Mapping[str, str], body: RequestBody,
) -> None:  # fmt: skip
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if isinstance(body, bytes):
            writer.write(body)
        elif body is not None:
            await _send_chunks(writer, body)
        await writer.drain()
    except ConnectionError as exc:
        raise ConnectionFailed(f"the connection broke while sending: {exc}", sent=True) from None


async def _send_chunks(writer: asyncio.StreamWriter, body: AsyncIterable[bytes]) -> None:
    async for chunk in body:
        if chunk:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()  # an upload's chunks are not all held in memory
    writer.write(b"0\r\n\r\n")


async def _head(reader: asyncio.StreamReader) -> tuple[int, _Headers]:
    """The answer's status and headers (a 1xx answer skipped)."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            raise ConnectionFailed(f"no answer came: {exc!r}", sent=True) from None
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        if not 100 <= status < 200:
            break
    headers = _Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers
