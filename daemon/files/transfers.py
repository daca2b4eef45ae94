"""Files of any size on byte streams: ``tool.downloadFile`` and ``tool.uploadFile``.

Both resolve their path as the other file tools do (homefs: no link can lead out, not even one
swapped in meanwhile) and keep the directory's descriptor for the whole transfer, so the file
lands where the path led when the call was made.

An upload is written to a new temporary file in the target's directory (``O_EXCL``, never
followed), then, once the platform's end frame came with the announced size and SHA-256, made
durable (fsync) and renamed over the path. Anything else (an abort, a silent peer, a short
count, a wrong hash, a disk error) removes the temporary file: nothing half-written is ever at
the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat

import msgspec
import structlog

from base.byte_stream import ByteStream
from contracts.daemon.files import (
    DEFAULT_MODE,
    DOWNLOAD_FILE,
    UPLOAD_FILE,
    DownloadFileParams,
    DownloadOpened,
    Uploaded,
    UploadFileParams,
    UploadOpened,
    upload_name,
)
from contracts.errors import FleetError, StreamAborted, WrongFileKind
from contracts.rpc.jsonrpc import handles
from daemon.byte_stream_hub import ByteStreamHub
from daemon.files import homefs
from daemon.files.homefs import Found, fs_error, retrying
from daemon.files.tools import open_file
from daemon.lean import bulk_sha256

log = structlog.get_logger(__name__)
_ENCODER = msgspec.json.Encoder()


class FileTransfers:
    def __init__(self, *, hub: ByteStreamHub, home: str) -> None:
        self._hub = hub
        self._home = home

    # --- download -------------------------------------------------------------------------
    @handles(DOWNLOAD_FILE)
    async def download_file(self, params: DownloadFileParams, _: None) -> DownloadOpened:
        fd, shown = await asyncio.to_thread(self._open_for_reading, params.path)
        try:
            st = os.fstat(fd)
            stream = self._hub.open(chunk_size=params.chunk_size,
                                    window=max(params.chunk_size, 64 * 1024))  # fmt: skip
        except BaseException:
            os.close(fd)
            raise
        await stream.start()
        self._hub.spawn(_send_file(stream, fd, params.chunk_size), name="download")
        return DownloadOpened(stream_id=stream.stream_id, path=shown, size=st.st_size,
                              mode=stat.S_IMODE(st.st_mode))  # fmt: skip

    def _open_for_reading(self, path: str) -> tuple[int, str]:
        def attempt() -> tuple[int, str]:
            with homefs.walk(self._home, path, follow_last=True) as found:
                return open_file(found), found.shown

        return retrying(attempt)

    # --- upload ---------------------------------------------------------------------------
    @handles(UPLOAD_FILE)
    async def upload_file(self, params: UploadFileParams, _: None) -> UploadOpened:
        target = await asyncio.to_thread(_Target.make, self._home, params)
        try:
            stream = self._hub.open(window=params.window, chunk_size=min(params.window, 4096))
        except BaseException:
            target.discard()
            raise
        await stream.start()
        self._hub.spawn(_receive_file(stream, target, params), name="upload")
        return UploadOpened(stream_id=stream.stream_id, path=target.shown)


#: Reads and writes go to a thread this many bytes at a time: one thread hop per chunk cost
#: more than the copy itself (bench 15).
_IO_BYTES = 1024 * 1024


async def _send_file(stream: ByteStream, fd: int, chunk: int) -> None:
    try:
        while data := await asyncio.to_thread(os.read, fd, max(chunk, _IO_BYTES)):
            await stream.send(data)  # in chunks; waits for credit: a slow client slows reads
        await stream.end(0)
    except StreamAborted as exc:
        log.info("file.download_aborted", stream_id=stream.stream_id, reason=exc.message)
    except OSError as exc:
        log.warning("file.download_failed", stream_id=stream.stream_id, error=str(exc))
        await stream.abort(f"read error: {exc.strerror or exc}")
    finally:
        os.close(fd)
        await stream.aclose()


class _Target:
    """Where an upload goes: the directory (its descriptor held), the name, and the temporary
    file being written next to it."""

    def __init__(self, found: Found, name: str, tmp: str, fd: int, mode: int) -> None:
        self.found, self.name, self.tmp, self.fd, self.mode = found, name, tmp, fd, mode
        self.shown = found.shown

    @classmethod
    def make(cls, home: str, params: UploadFileParams) -> _Target:
        found = retrying(lambda: _walk_parent(home, params.path))
        try:
            dir_fd, name = found.entry()
            mode = params.mode if params.mode is not None else _mode_of(dir_fd, name, found.shown)
            tmp = upload_name(name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
            except OSError as exc:
                raise fs_error(found.shown, exc) from None
            return cls(found, name, tmp, fd, mode)
        except BaseException:
            found.close()
            raise

    @property
    def dir_fd(self) -> int:
        return self.found.entry()[0]

    def commit(self) -> None:
        """On disk, then in place (rename over whatever was at the name, a link included: the
        link is replaced, never followed), then the directory entry on disk."""
        os.fchmod(self.fd, self.mode)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        os.fsync(self.dir_fd)
        self.found.close()

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.tmp, dir_fd=self.dir_fd)
        self.found.close()


def _walk_parent(home: str, path: str) -> Found:
    """The path's directory, made when missing; the last component not followed (a link there
    is replaced by the upload)."""
    with homefs.walk(home, path, make_dirs=True) as found:
        found.entry()  # the home itself is no file
        kept = Found(list(found.dirs), found.name, found.shown, found.field)
        found.dirs = []  # handed over to ``kept``
    return kept


def _mode_of(dir_fd: int, name: str, shown: str) -> int:
    """The mode of the file an upload replaces (its permission bits), else the default; a
    directory there cannot be replaced."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return DEFAULT_MODE
    except OSError as exc:
        raise fs_error(shown, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise WrongFileKind(f"{shown} is a directory", data={"kind": "dir"})
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else DEFAULT_MODE


async def _receive_file(stream: ByteStream, target: _Target, params: UploadFileParams) -> None:
    digest, size, done = bulk_sha256(), 0, False
    pending: list[bytes] = []
    held = 0
    try:
        while chunk := await stream.receive():
            size += len(chunk)
            if params.size is not None and size > params.size:
                raise StreamAborted(f"more than the {params.size} bytes announced")
            pending.append(chunk)
            held += len(chunk)
            if held >= _IO_BYTES:  # received bytes are granted again at once: at most this held
                await asyncio.to_thread(_write_all, target.fd, pending, digest)
                pending, held = [], 0
        await asyncio.to_thread(_write_all, target.fd, pending, digest)
        sha = digest.hexdigest()
        _check_complete(params, size, sha)
        await asyncio.to_thread(target.commit)
        done = True
        result = Uploaded(path=target.shown, size=size, sha256=sha, mode=target.mode)
        await stream.send(_ENCODER.encode(result))
        await stream.end(0)
        log.info("file.uploaded", path=target.shown, size=size)
    except (FleetError, OSError) as exc:
        reason = exc.message if isinstance(exc, FleetError) else (exc.strerror or str(exc))
        log.info("file.upload_aborted", path=target.shown, size=size, reason=reason)
        await stream.abort(reason)
    finally:
        if not done:
            await asyncio.to_thread(target.discard)
        await stream.aclose()


def _check_complete(params: UploadFileParams, size: int, sha: str) -> None:
    if params.size is not None and size != params.size:
        raise StreamAborted(f"the upload ended after {size} of {params.size} bytes")
    if params.sha256 is not None and sha != params.sha256:
        raise StreamAborted(f"the bytes' SHA-256 is {sha}, not the {params.sha256} announced")


def _write_all(fd: int, pieces: list[bytes], digest: hashlib._Hash) -> None:
    """Hash and write, in a thread (OpenSSL's SHA-256 lets go of the GIL for large inputs)."""
    for data in pieces:
        digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
