"""``MockTransport``: a ``Transport`` that answers each request with a function, as httpx's
``MockTransport`` does: for tests, and for tools that put a ``FleetClient`` in front of
something other than a gateway over HTTP.

    async def handler(request: Request) -> Response:
        if request.path == "/rpc":
            call = request.json()
            return Response.of_json({"jsonrpc": "2.0", "id": call["id"],
                                     "result": {"instances": []}})
        return Response(404)

    async with FleetClient("http://gw", "secret", transport=MockTransport(handler)) as fleet:
        assert await fleet.list_instances() == []

The client's checks are the same as over HTTP: a 401 is ``Unauthorized``, an answer to
``POST /rpc`` that is not JSON is the route's error (``fleet.client.transport.answer_of``). A
stream's answer is a ``Response`` whose content is an async iterable of chunks, read as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fleet.client.transport import Answer, Headers, RequestBody, Timeout, answer_of


@dataclass(frozen=True)
class Request:
    """What the client sent: ``path`` after the gateway's URL (``/rpc``, ``/events``)."""

    method: str
    path: str
    headers: Headers = field(default_factory=Headers)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def token(self) -> str:
        """The bearer secret sent ("" when none was)."""
        return self.headers.get("Authorization", "").removeprefix("Bearer ")


class Response:
    """An answer: ``content`` whole, or as chunks an async iterable yields (a stream)."""

    def __init__(
        self,
        status: int = 200,
        content: bytes | AsyncIterable[bytes] = b"",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = Headers(headers)
        length = self.headers.get("Content-Length")
        whole = len(content) if isinstance(content, bytes) else None
        self.content_length = int(length) if length is not None else whole
        self.content = BodyReader(_chunks(content) if isinstance(content, bytes) else content)

    @classmethod
    def of_json(
        cls, value: Any, status: int = 200, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """``value`` (or bytes already JSON) as an ``application/json`` answer."""
        data = value if isinstance(value, bytes) else msgspec.json.encode(value)
        return cls(status, data, headers={"Content-Type": "application/json", **(headers or {})})

    @property
    def content_type(self) -> str:
        kind = self.headers.get("Content-Type", "application/octet-stream")
        return kind.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        return await self.content.read()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


class BodyReader:
    """A ``fleet.client.transport.Body`` over chunks as they come."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            self._buffer += await anext(self._chunks)
        except StopAsyncIteration:
            self._eof = True
        return not self._eof

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        start = 0
        while (at := self._buffer.find(separator, start)) < 0:
            if max_size is not None and len(self._buffer) > max_size:
                raise ValueError(f"no {separator!r} within {max_size} bytes")
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                return self._take(len(self._buffer))
        end = at + len(separator)
        if max_size is not None and end > max_size:
            raise ValueError(f"no {separator!r} within {max_size} bytes")
        return self._take(end)

    async def readline(self) -> bytes:
        return await self.readuntil(b"\n")

    async def read(self) -> bytes:
        while await self._fill():
            pass
        return self._take(len(self._buffer))

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        while self._buffer or await self._fill():
            if self._buffer:
                yield self._take(n)


#: Answers one request: a Response, or an awaitable of one.
Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport:
    """A ``Transport`` whose every request is answered by ``handler``; ``url`` names the
    gateway in error messages only. A call's ``timeout_s`` bounds its handler; a stream's
    ``timeout`` is the handler's to mimic."""

    def __init__(self, handler: Handler, *, url: str = "mock://gateway") -> None:
        self.handler = handler
        self.url = url

    async def _answer(self, request: Request) -> Response:
        answer = self.handler(request)
        return await answer if inspect.isawaitable(answer) else answer

    async def rpc(
        self, body: bytes, *, headers: Mapping[str, str], timeout_s: float | None = None
    ) -> bytes:
        sent = Headers({**headers, "Content-Type": "application/json"})
        async with asyncio.timeout(timeout_s):  # as HTTP's: TimeoutError past it
            answer = await self._answer(Request("POST", "/rpc", sent, {}, body))
        return await answer_of(self.url, answer)

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
        if body is None or isinstance(body, bytes):
            data = body or b""
        else:  # an upload's chunks: all of them, as a server would read them
            data = b"".join([chunk async for chunk in body])
        yield await self._answer(Request(method, path, Headers(headers), dict(query or {}), data))

    async def aclose(self) -> None:
        return None
