"""envd's plain HTTP file routes in fleetd's streamed transfers (``GET`` and ``PUT
/machines/{id}/files/...``' own code, ``services/gateway/streams/files.py``): any size, read and
written as they come, never held whole.

- ``GET /files?path=&username=``: the file; 404 when there is none, 400 for a directory.
- ``POST /files``: ``multipart/form-data``, a part a file (its ``filename`` the path, unless
  the query's ``path`` names it), or ``application/octet-stream`` (the body the file at
  ``path``; ``Content-Encoding: gzip`` unpacked as it comes). Answered with each file's entry.

A request carries the sandbox's access token, or a signed URL's ``signature`` (what the SDKs'
``download_url`` and ``upload_url`` make): ``v1_`` and the base64 of the SHA-256 of
``path:operation:user:token[:expiration]``, checked against each of the sandbox's tokens,
refused once its ``signature_expiration`` has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from email.message import Message

import msgspec
from aiohttp import BodyPartReader, web

from contracts.daemon import files as df
from contracts.e2b import control as api
from contracts.errors import FleetError, InvalidParams, Unauthorized
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from services.gateway.auth import Caller, current_caller
from services.gateway.e2b.envd_files import Homes, e2b_paths, to_e2b, to_machine
from services.gateway.e2b.errors import unsupported
from services.gateway.e2b.sandbox import Doorman, Target, http_error
from services.gateway.streams import ByteStreamOpener, serve_download, upload

#: The most files one multipart upload writes.
MAX_PARTS = 1000
_EXPIRED = {"code": 401, "message": "signature is already expired"}


class Files:
    def __init__(self, store: Store, box: SecretBox, doorman: Doorman,
                 opener: ByteStreamOpener, homes: Homes) -> None:  # fmt: skip
        self._store = store
        self._box = box
        self._doorman = doorman
        self._opener = opener
        self._homes = homes

    async def serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        try:
            if request.method == "GET":
                caller = await self._caller(request, target, "read")
                path = to_machine(request.query.get("path", ""))
                with e2b_paths(await self._homes.of(target.sandbox_id, caller)):
                    return await serve_download(request, self._opener, caller,
                                                target.sandbox_id, path)  # fmt: skip
            if request.method == "POST":
                caller = await self._caller(request, target, "write")
                return await self._upload(request, target.sandbox_id, caller)
            raise InvalidParams(f"{request.method} /files: GET or POST")
        except _Expired:
            return web.Response(status=401, body=msgspec.json.encode(_EXPIRED),
                                content_type="application/json")  # fmt: skip
        except FleetError as exc:
            return http_error(exc)

    async def _caller(self, request: web.Request, target: Target, operation: str) -> Caller:
        signature = request.query.get("signature")
        if signature is None or request.headers.get(api.ACCESS_TOKEN_HEADER):
            return await self._doorman.caller(request, target)
        expires = request.query.get("signature_expiration")
        if expires is not None and (not expires.isdigit() or int(expires) < time.time()):
            raise _Expired
        parts = [request.query.get("path", ""), operation, request.query.get("username", "")]
        for holder in await self._store.e2b.holders(target.sandbox_id):
            if holder.traffic:  # it opens ports, it signs nothing
                continue
            token = self._box.decrypt(holder.sealed)
            if hmac.compare_digest(signature, sign([*parts, token], expires)):
                caller = await current_caller(self._store, holder.caller_id)
                if caller is not None:
                    return caller
        raise Unauthorized("invalid signature")

    async def _upload(self, request: web.Request, machine_id: str,
                      caller: Caller) -> web.Response:  # fmt: skip
        if any(name.lower().startswith("x-metadata-") for name in request.headers):
            why = "fleetd keeps no extended attributes on a machine's files"
            raise unsupported("a file's metadata (X-Metadata-*)", why)
        home = await self._homes.of(machine_id, caller)
        query_path = request.query.get("path")
        written: list[df.Uploaded] = []
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or len(written) >= MAX_PARTS:
                    raise InvalidParams(f"an upload holds at most {MAX_PARTS} files")
                path = query_path or _filename(part)
                written.append(await self._write(_part_chunks(part), machine_id, path, caller))
        else:
            if not query_path:
                raise InvalidParams("an octet-stream upload names its file: ?path=", field="path")
            # A gzip body (Content-Encoding) comes unpacked: aiohttp's parser unpacks it as it
            # is read, a bounded piece at a time, held back by this reader's pace.
            chunks = request.content.iter_chunked(df.FILE_CHUNK)
            written.append(await self._write(chunks, machine_id, query_path, caller))
        entries = [{"name": w.path.rsplit("/", 1)[-1], "type": "file",
                    "path": to_e2b(w.path, home)} for w in written]  # fmt: skip
        return web.Response(body=msgspec.json.encode(entries), content_type="application/json")

    async def _write(self, chunks: AsyncIterator[bytes], machine_id: str, path: str,
                     caller: Caller) -> df.Uploaded:  # fmt: skip
        if not path:
            raise InvalidParams("a file of an upload has no path", field="path")
        return await upload(chunks, self._opener, caller, machine_id, to_machine(path))


class _Expired(Exception):
    """A signed URL past its expiration (answered with envd's exact body)."""


def sign(parts: list[str], expires: str | None) -> str:
    """A signed URL's signature: ``v1_`` and the unpadded base64 of the SHA-256 of
    ``path:operation:user:token`` (``:expiration`` when it has one)."""
    raw = ":".join(parts + ([expires] if expires is not None else []))
    return "v1_" + base64.b64encode(hashlib.sha256(raw.encode()).digest()).decode().rstrip("=")


def _filename(part: BodyPartReader) -> str:
    """A part's ``filename``, whole: a path (aiohttp's own reading drops its leading slash)."""
    header = Message()
    header["Content-Disposition"] = part.headers.get("Content-Disposition", "")
    return header.get_filename() or ""


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(df.FILE_CHUNK):
        yield chunk
