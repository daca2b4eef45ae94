"""``GET`` and ``PUT /machines/{machineId}/files/{path}``: a machine's files of any size,
streamed through its daemon (contracts.daemon.streams), with the same bearer tokens as ``/rpc``.

The path after ``files/`` is relative to the machine's home (percent-encoded); the daemon
confines it as it confines every file method. The gateway holds at most one window of a
transfer: a download's credit is granted only as the HTTP client takes the bytes (each write
drains before the next chunk is asked for), and an upload's body is read only as the daemon
grants credit, so a slow side slows the other, end to end.

- ``GET``: ``200``, ``Content-Length`` the file's size, ``X-Fleet-Mode`` its permission bits
  (octal). A file that changes size while it is sent ends the response early (the client sees
  fewer bytes than announced), never with other bytes than the file's.
- ``PUT``: the body is the file. Query ``mode`` (octal; else the replaced file's, else 644) and
  ``sha256`` (hex; the daemon refuses other bytes). With ``Content-Length``, a body cut short
  is refused too. ``201`` and the daemon's ``Uploaded`` (path, size, sha256, mode) as JSON once
  the file is in place; on any failure nothing is at the path.

Errors before the transfer starts are the JSON-RPC error object with the error kind's HTTP
status (``services.gateway.errors_http``), as on every other route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import structlog
from aiohttp import web

from base.byte_stream import ByteStream
from contracts import errors as e
from contracts.daemon import files as df
from contracts.gateway.audit import Action
from contracts.gateway.files import FILES_ROUTE
from contracts.ids import MACHINE_ID_RE
from contracts.rpc.jsonrpc import P, invalid_params
from services.gateway.auth import Caller
from services.gateway.errors_http import error_response
from services.gateway.streams.opener import ByteStreamOpener

log = structlog.get_logger(__name__)
_UPLOADED = msgspec.json.Decoder(df.Uploaded)
#: The daemon's answer to an upload is one small JSON document.
_ANSWER_MAX = 64 * 1024


def add_files_routes(
    app: web.Application, opener: ByteStreamOpener, caller_key: web.RequestKey[Caller]
) -> None:
    async def download(request: web.Request) -> web.StreamResponse:
        try:
            return await _download(request, opener, request[caller_key])
        except e.FleetError as exc:
            return error_response(exc)

    async def upload(request: web.Request) -> web.StreamResponse:
        try:
            return await _upload(request, opener, request[caller_key])
        except e.FleetError as exc:
            return error_response(exc)

    app.router.add_get(FILES_ROUTE, download)
    app.router.add_put(FILES_ROUTE, upload)


def _target(request: web.Request) -> tuple[str, str]:
    machine_id = request.match_info["machineId"]
    if not MACHINE_ID_RE.fullmatch(machine_id):
        raise e.InvalidParams(f"{machine_id!r} is not a machine id", field="$.machineId")
    return machine_id, request.match_info["path"]


def _params(kind: type[P], **fields: object) -> P:
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, kind)
    except msgspec.ValidationError as exc:
        raise invalid_params(exc) from None


async def _download(
    request: web.Request, opener: ByteStreamOpener, caller: Caller
) -> web.StreamResponse:
    machine_id, path = _target(request)
    return await serve_download(request, opener, caller, machine_id, path)


async def serve_download(request: web.Request, opener: ByteStreamOpener, caller: Caller,
                         machine_id: str, path: str) -> web.StreamResponse:  # fmt: skip
    """The file at ``path`` of the machine's home as the answer to ``request``, streamed."""
    params = _params(df.DownloadFileParams, path=path)
    opened, stream = await opener.open(caller, machine_id, df.DOWNLOAD_FILE, params,
                                       window=df.FILE_WINDOW, chunk_size=df.FILE_CHUNK,
                                       audit=Action.FILE_DOWNLOAD)  # fmt: skip
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                       "X-Fleet-Mode": f"{opened.mode:o}"})  # fmt: skip
    resp.content_length = opened.size
    async with stream:
        await resp.prepare(request)
        if await relay_download(stream, resp, opened.size) != opened.size:
            _cut(request, "the file changed size while it was sent")
            return resp
        await resp.write_eof()
    return resp


async def relay_download(stream: ByteStream, resp: web.StreamResponse, size: int) -> int:
    """The stream's bytes into the response, never more than ``size``; how many there were.
    ``receive`` grants credit for a chunk only when the write before it has drained."""
    sent = 0
    try:
        async for chunk in stream:
            room = size - sent
            await resp.write(chunk[:room])
            sent += len(chunk)
            if sent > size:
                await stream.abort("the file grew while it was sent")
                break
    except e.StreamAborted as exc:
        log.info("files.download_broken", stream_id=stream.stream_id, reason=exc.message)
        return -1
    return sent


def _cut(request: web.Request, why: str) -> None:
    """After the headers, an error can only be told by closing the connection short."""
    log.info("files.download_cut", path=request.path, reason=why)
    if request.transport is not None:
        request.transport.close()


async def _upload(
    request: web.Request, opener: ByteStreamOpener, caller: Caller
) -> web.StreamResponse:
    machine_id, path = _target(request)
    answer = await upload(
        request.content.iter_chunked(df.FILE_CHUNK),
        opener,
        caller,
        machine_id,
        path,
        mode=_octal(request.query.get("mode")),
        size=request.content_length,
        sha256=request.query.get("sha256"),
    )
    return web.Response(body=msgspec.json.encode(answer), status=201,
                        content_type="application/json")  # fmt: skip


async def upload(chunks: AsyncIterator[bytes], opener: ByteStreamOpener, caller: Caller,
                 machine_id: str, path: str, *, mode: int | None = None,
                 size: int | None = None, sha256: str | None = None) -> df.Uploaded:  # fmt: skip
    """``chunks`` as the file at ``path`` of the machine's home, in place once whole (``size``
    and ``sha256``, when given, checked); on any failure nothing is at the path."""
    params = _params(df.UploadFileParams, path=path, mode=mode, size=size, sha256=sha256)
    # What comes back is the answer alone: a window of one chunk.
    _, stream = await opener.open(caller, machine_id, df.UPLOAD_FILE, params,
                                  window=df.FILE_CHUNK, chunk_size=df.FILE_CHUNK,
                                  audit=Action.FILE_UPLOAD)  # fmt: skip
    async with stream:
        received = await _pump(chunks, stream)
        if params.size is not None and received != params.size:
            raise e.TransferAborted(f"the body ended after {received} of {params.size} bytes")
        await stream.end()
        answer = await _answer(stream)
    log.info("files.uploaded", machine_id=machine_id, path=answer.path, size=answer.size)
    return answer


async def _pump(chunks: AsyncIterator[bytes], stream: ByteStream) -> int:
    """``chunks`` onto the stream; read only as the daemon grants credit. A client that
    goes away mid-body raises, which aborts the stream: the daemon drops its temporary file."""
    received, pending = 0, bytearray()
    try:
        # The body arrives in pieces of the socket's reads (64 KiB): gathered into whole
        # chunks, so that each frame on the stream carries a full one.
        async for data in chunks:
            pending += data
            received += len(data)
            if len(pending) >= df.FILE_CHUNK:
                await stream.send(pending)
                pending = bytearray()
    except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise e.TransferAborted(f"the client went away mid-upload: {exc!r}") from None
    await stream.send(pending)
    return received


async def _answer(stream: ByteStream) -> df.Uploaded:
    body = b""
    async for chunk in stream:
        body += chunk
        if len(body) > _ANSWER_MAX:
            raise e.TransferAborted("the daemon's answer to the upload is too long")
    try:
        return _UPLOADED.decode(body)
    except msgspec.DecodeError:
        raise e.TransferAborted("the daemon's answer to the upload is not one") from None


def _octal(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 8)
    except ValueError:
        raise e.InvalidParams(f"mode {text!r} is not an octal number", field="$.mode") from None
