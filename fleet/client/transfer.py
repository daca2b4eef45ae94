"""``FleetClient``'s streamed file transfers (bound as its methods): ``upload`` and
``download`` over ``PUT``/``GET /machines/{machineId}/files/{path}``, any size, checked by SHA-256.

An upload sends the local file's size and mode, hashes the bytes as they go and compares with
the SHA-256 the daemon computed of what it wrote. A download goes to a temporary file next to
the local target, checked against the announced size, made durable, then renamed into place:
an interrupted download leaves nothing at the target either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import msgspec

from contracts.daemon.files import FILE_CHUNK, Uploaded
from contracts.errors import ERROR_HEADER, TransferAborted
from contracts.gateway.files import files_url
from fleet.client.transport import Answer, StreamCut, Timeout

if TYPE_CHECKING:  # the client binds these
    from fleet.client.core import ClientCore

_UPLOADED = msgspec.json.Decoder(Uploaded)
#: A transfer may take long; only a stall this long fails it.
_STALL = Timeout(total=None, connect=30, read=120)


class Downloaded(msgspec.Struct, rename="camel", kw_only=True):
    path: str
    size: int
    sha256: str
    mode: int


async def upload(
    self: ClientCore, machine_id: str, local: str | Path, remote: str, *, mode: int | None = None
) -> Uploaded:
    """Put the local file at ``remote`` on the machine (its mode too, unless ``mode``)."""
    st = os.stat(local)
    digest = hashlib.sha256()
    query = {"mode": f"{mode if mode is not None else stat.S_IMODE(st.st_mode):o}"}
    headers = {**self.headers, "Content-Length": str(st.st_size),
               "Content-Type": "application/octet-stream"}  # fmt: skip
    async with self.transport.request("PUT", files_url(machine_id, remote), headers=headers,
                                      body=_chunks(Path(local), digest), query=query,
                                      timeout=_STALL) as resp:  # fmt: skip
        body = await resp.read()
        _check(self, resp, body)
    done = _UPLOADED.decode(body)
    if done.sha256 != digest.hexdigest() or done.size != st.st_size:
        raise TransferAborted(f"{remote}: the machine wrote {done.size} bytes, SHA-256 "
                              f"{done.sha256}; {st.st_size} bytes, "
                              f"{digest.hexdigest()} were sent")  # fmt: skip
    return done


async def download(self: ClientCore, machine_id: str, remote: str, local: str | Path) -> Downloaded:
    """The machine's file at ``remote`` into ``local`` (a file path), with its mode."""
    target = Path(local)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.fleet-download")
    path = files_url(machine_id, remote)
    try:
        async with self.transport.request("GET", path, headers=self.headers, timeout=_STALL,
                                          read_ahead=_IO_BYTES) as resp:  # fmt: skip
            if resp.status != 200:
                _check(self, resp, await resp.read())
            mode = int(resp.headers.get("X-Fleet-Mode", "644"), 8)
            size, sha = await _save(resp, tmp, mode)
        if resp.content_length is not None and size != resp.content_length:
            raise TransferAborted(f"{remote}: {size} of {resp.content_length} bytes came")
        os.replace(tmp, target)
    except StreamCut as exc:  # the gateway cut the body short
        raise TransferAborted(f"{remote}: the download broke off: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Downloaded(path=str(target), size=size, sha256=sha, mode=mode)


def _check(self: ClientCore, resp: Answer, body: bytes) -> None:
    if resp.status not in (200, 201):
        raise self.http_error(resp.status, body, resp.headers.get(ERROR_HEADER))


#: Local reads and writes go to a thread this many bytes at a time; a download's socket is read
#: ahead by as much meanwhile (aiohttp's default, 64 KiB, stops reading at every 128 KiB).
_IO_BYTES = 1024 * 1024


async def _chunks(path: Path, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while data := await asyncio.to_thread(_read_hashed, f, digest):
            yield data


def _read_hashed(f: BinaryIO, digest: hashlib._Hash) -> bytes:
    data = f.read(_IO_BYTES)
    digest.update(data)  # in the thread: hashlib lets go of the GIL for large inputs
    return data


async def _save(resp: Answer, tmp: Path, mode: int) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        pending = bytearray()
        async for data in resp.content.iter_chunked(FILE_CHUNK):
            pending += data
            size += len(data)
            if len(pending) >= _IO_BYTES:  # handed over whole: a new one gathers the next
                await asyncio.to_thread(_write_hashed, f, pending, digest)
                pending = bytearray()
        await asyncio.to_thread(_write_hashed, f, pending, digest)
        f.flush()
        os.fchmod(f.fileno(), mode)
        await asyncio.to_thread(os.fsync, f.fileno())
    return size, digest.hexdigest()


def _write_hashed(f: BinaryIO, data: bytearray, digest: hashlib._Hash) -> None:
    digest.update(data)
    f.write(data)
