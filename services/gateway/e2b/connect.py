"""The Connect protocol, with JSON, as E2B's SDKs speak it to envd (connectrpc.com/docs/protocol):
all a sandbox's RPCs need, on the front's aiohttp listener.

- A unary call: ``POST /<package>.<Service>/<Method>``, ``Content-Type: application/json``, the
  request message as its body; answered 200 with the response message, or an error's status
  with ``{"code": "<connect code>", "message": ...}``.
- A server stream: ``application/connect+json``, the request as one envelope (a flags byte, a
  4-byte big-endian length, the JSON); answered 200 with exactly that content type, an envelope
  per message, then the end-of-stream envelope (flags 2): ``{}``, or ``{"error": ...}``. A
  stream's error goes there, never in the status (the JavaScript SDK would read the status).
- A client stream: envelopes in, read one at a time as they come (bounded, each and in number).

``Connect-Timeout-Ms`` is the call's deadline: a stream past it ends with
``deadline_exceeded``. What the client sends is untrusted: an envelope is at most
``MAX_MESSAGE`` bytes, read as its length says and no further.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from contracts.errors import FleetError, InvalidParams, TransferAborted
from services.gateway.e2b.errors import CONNECT_STATUS, connect_code

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=msgspec.Struct)
STREAM_TYPE = "application/connect+json"
UNARY_TYPE = "application/json"
#: The largest request message taken (a stdin chunk, a path: far less).
MAX_MESSAGE = 4 * 1024 * 1024
_HEADER = struct.Struct(">BI")
_END = 0x02
_ENCODE = msgspec.json.Encoder()


class Dropped(Exception):
    """What a stream followed went away midway (its sandbox killed, its machine stopping): the
    call's connection is dropped, with no end, as envd's is when its sandbox dies, so that the
    SDK asks the sandbox's health and says what became of it."""


class ConnectError(Exception):
    """An error with a Connect code of its own (one no fleetd error stands for)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error_of(exc: FleetError | ConnectError) -> dict[str, str]:
    if isinstance(exc, ConnectError):
        return {"code": exc.code, "message": exc.message}
    return {"code": connect_code(exc), "message": exc.message}


def decode(raw: bytes, kind: type[M]) -> M:
    """A request message: unknown fields ignored, numbers taken from strings (int64's form)."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParams(f"invalid request message: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidParams("the request message is not JSON") from None


def deadline_s(request: web.Request) -> float | None:
    """``Connect-Timeout-Ms`` in seconds (None: no deadline)."""
    raw = request.headers.get("Connect-Timeout-Ms", "")
    return int(raw) / 1000 if raw.isdigit() and int(raw) > 0 else None


async def unary(request: web.Request, kind: type[M],
                handler: Callable[[M], Awaitable[msgspec.Struct]]) -> web.Response:  # fmt: skip
    """A unary call of ``handler`` on the request's message."""
    try:
        message = decode(await _body(request), kind)
        async with asyncio.timeout(deadline_s(request)):
            answer = await handler(message)
    except (FleetError, ConnectError) as exc:
        error = _error_of(exc)
        return web.Response(status=CONNECT_STATUS.get(error["code"], 500),
                            body=_ENCODE.encode(error), content_type=UNARY_TYPE)  # fmt: skip
    except TimeoutError:
        error = {"code": "deadline_exceeded", "message": "the call's deadline passed"}
        return web.Response(status=504, body=_ENCODE.encode(error), content_type=UNARY_TYPE)
    return web.Response(body=_ENCODE.encode(answer), content_type=UNARY_TYPE)


async def server_stream(request: web.Request, kind: type[M],
                        messages: Callable[[M], AsyncIterator[msgspec.Struct]],
                        ) -> web.StreamResponse:  # fmt: skip
    """A server stream of ``messages``'s answers to the request's one message."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": STREAM_TYPE})
    end: dict[str, object] = {}
    try:
        message = decode(await _one_envelope(request), kind)
        await resp.prepare(request)
        async with asyncio.timeout(deadline_s(request)):
            async for answer in messages(message):
                await resp.write(envelope(_ENCODE.encode(answer)))
    except (FleetError, ConnectError) as exc:
        end = {"error": _error_of(exc)}
    except TimeoutError:
        end = {"error": {"code": "deadline_exceeded", "message": "the call's deadline passed"}}
    except ConnectionError:  # the client went away mid-stream: nobody to tell the end to
        log.info("e2b.stream_client_gone", path=request.path)
        return resp
    except Dropped as exc:
        log.info("e2b.stream_dropped", path=request.path, reason=str(exc))
        if request.transport is not None:
            request.transport.abort()
        return resp
    if not resp.prepared:
        await resp.prepare(request)
    with contextlib.suppress(ConnectionError):
        await resp.write(envelope(_ENCODE.encode(end), _END))
        await resp.write_eof()
    return resp


async def client_stream(request: web.Request, kind: type[M],
                        handler: Callable[[AsyncIterator[M]], Awaitable[msgspec.Struct]],
                        ) -> web.StreamResponse:  # fmt: skip
    """A client stream: ``handler`` takes the request's messages as they come; its answer is
    the one message of the response, then the end-of-stream envelope."""
    end: dict[str, object] = {}
    answer: msgspec.Struct | None = None
    try:
        async with asyncio.timeout(deadline_s(request)):
            answer = await handler(client_messages(request, kind))
    except (FleetError, ConnectError) as exc:
        end = {"error": _error_of(exc)}
    except TimeoutError:
        end = {"error": {"code": "deadline_exceeded", "message": "the call's deadline passed"}}
    resp = web.StreamResponse(status=200, headers={"Content-Type": STREAM_TYPE})
    await resp.prepare(request)
    if answer is not None:
        await resp.write(envelope(_ENCODE.encode(answer)))
    await resp.write(envelope(_ENCODE.encode(end), _END))
    await resp.write_eof()
    return resp


async def client_messages(request: web.Request, kind: type[M]) -> AsyncIterator[M]:
    """A client stream's messages, one envelope at a time as they come."""
    reader = request.content
    while True:
        try:
            head = await reader.readexactly(_HEADER.size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise TransferAborted("a client stream ended inside an envelope") from None
            return
        flags, size = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise InvalidParams(f"an envelope of {size} bytes is over {MAX_MESSAGE}")
        data = await reader.readexactly(size)
        if flags & _END:
            return
        yield decode(data, kind)


def envelope(data: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(flags, len(data)) + data


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_MESSAGE:
        raise InvalidParams(f"a request message of {request.content_length} bytes is over "
                            f"{MAX_MESSAGE}")  # fmt: skip
    data = await request.content.read(MAX_MESSAGE + 1)
    if len(data) > MAX_MESSAGE:
        raise InvalidParams(f"a request message is over {MAX_MESSAGE} bytes")
    return data


async def _one_envelope(request: web.Request) -> bytes:
    """The one envelope of a server stream's request."""
    with contextlib.suppress(asyncio.IncompleteReadError):
        head = await request.content.readexactly(_HEADER.size)
        _, size = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise InvalidParams(f"an envelope of {size} bytes is over {MAX_MESSAGE}")
        return await request.content.readexactly(size)
    raise InvalidParams("a stream's request holds no whole envelope")
