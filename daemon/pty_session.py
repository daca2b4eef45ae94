"""One interactive session: a command on a pseudo-terminal, its scrollback and its viewers.

The daemon reads the terminal into a ring of ``SCROLLBACK_BYTES`` and each attached viewer
sends on from its own offset in that ring, as fast as its stream's credit allows. With no
viewer the ring just keeps the newest output. A viewer that falls a whole ring behind pauses
the reading (the command then blocks on its terminal: back-pressure, nothing grows); one that
takes nothing for ``STALL_S`` while the session waits on it is no longer waited for, and told
how many bytes it missed when it reads again, so a stalled viewer cannot freeze the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
import time

import structlog

from base.byte_stream import ByteStream
from base.relay import relay
from contracts import sessions as ss
from contracts.errors import StreamAborted

log = structlog.get_logger(__name__)
_READ = 64 * 1024
#: How long after the command exits its terminal may still give output (a child holding it).
_EOF_GRACE_S = 0.5


class Ring:
    """The newest ``capacity`` bytes of a stream, addressed by absolute offset."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self.start = 0  # offset of the oldest byte kept
        self.end = 0  # offset after the newest byte

    def write(self, data: bytes) -> None:
        self._buf += data
        self.end += len(data)
        excess = len(self._buf) - self.capacity
        if excess > 0:
            del self._buf[:excess]  # cheap: bytearray moves its start, not its bytes
            self.start += excess

    def read(self, offset: int, limit: int) -> bytes:
        at = max(offset, self.start) - self.start
        return bytes(self._buf[at : at + limit])


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def exit_code(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


class Session:
    def __init__(self, *, session_id: str, name: str, argv: list[str], cwd: str, cols: int,
                 rows: int, proc: asyncio.subprocess.Process, master: int) -> None:  # fmt: skip
        self.id, self.name, self.argv, self.cwd = session_id, name, argv, cwd
        self.cols, self.rows = cols, rows
        self.proc, self.master = proc, master
        self.started_at = time.time()
        self.ring = Ring(ss.SCROLLBACK_BYTES)
        self.viewers: set[Viewer] = set()
        self.exit_code: int | None = None
        self.eof = False
        self._eof_seen = asyncio.Event()
        self.done = asyncio.Event()  # exited and read to the end
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._stall: asyncio.TimerHandle | None = None
        os.set_blocking(master, False)
        self._resume()
        self._watch = asyncio.create_task(self._wait_exit(), name=f"session-{session_id}")

    def info(self) -> ss.SessionInfo:
        return ss.SessionInfo(
            session_id=self.id, name=self.name, command=self.argv, cwd=self.cwd, cols=self.cols,
            rows=self.rows, pid=self.proc.pid, started_at=round(self.started_at, 3),
            running=self.exit_code is None, exit_code=self.exit_code,
            attached=len(self.viewers), output_bytes=self.ring.end,
        )  # fmt: skip

    def resize(self, cols: int, rows: int) -> None:
        if not self.eof:
            set_size(self.master, cols, rows)  # the kernel sends SIGWINCH to the foreground
        self.cols, self.rows = cols, rows

    # --- reading the terminal -----------------------------------------------------------------
    def _resume(self) -> None:
        if not self._reading and not self.eof:
            self._loop.add_reader(self.master, self._on_readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self.master)
            self._reading = False

    def _on_readable(self) -> None:
        # A terminal hands out a few KiB per read: take what is there (up to _READ) in one go,
        # so the viewers send one bigger chunk rather than many small ones.
        pieces: list[bytes] = []
        size, eof = 0, False
        while size < _READ:
            try:
                data = os.read(self.master, _READ - size)
            except BlockingIOError:
                break
            except OSError as exc:  # EIO: every process holding the terminal has let go
                if exc.errno != errno.EIO:
                    log.warning("session.read_failed", session_id=self.id, error=str(exc))
                data = b""
            if not data:
                eof = True
                break
            pieces.append(data)
            size += len(data)
        if pieces:
            self._took(b"".join(pieces))
        if eof:
            self._at_eof()

    def _took(self, data: bytes) -> None:
        self.ring.write(data)
        for v in self.viewers:
            v.wake.set()
        if self._lagging():
            self._pause()
            if self._stall is None:
                self._stall = self._loop.call_later(ss.STALL_S, self._skip_stalled)

    def _lagging(self) -> bool:
        """Would the next read overwrite output some viewer has not been sent yet?"""
        room = self.ring.capacity - _READ
        return any(self.ring.end - v.cursor > room for v in self.viewers if not v.stalled)

    def progressed(self) -> None:
        """A viewer moved on (or left): read again if nobody is a ring behind any more."""
        if not self._reading and not self._lagging():
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            self._resume()

    def _skip_stalled(self) -> None:
        self._stall = None
        now = time.monotonic()
        for v in self.viewers:
            if self.ring.end - v.cursor > self.ring.capacity - _READ and (
                now - v.progress_at >= ss.STALL_S
            ):
                v.stalled = True  # no longer waited for, until it takes something again
        self.progressed()

    def _at_eof(self) -> None:
        self._pause()
        self.eof = True
        self._eof_seen.set()
        for v in self.viewers:
            v.wake.set()

    async def _wait_exit(self) -> None:
        returncode = await self.proc.wait()
        if not self.eof:  # a background child may hold the terminal: give it a moment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof_seen.wait(), _EOF_GRACE_S)
            self._at_eof()
        self.exit_code = exit_code(returncode)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.done.set()
        for v in self.viewers:
            v.wake.set()
        log.info("session.exited", session_id=self.id, exit_code=self.exit_code)

    # --- input --------------------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        """Type ``data``; waits while the terminal's input queue is full."""
        view = memoryview(data)
        while view and not self.eof:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                ready = self._loop.create_future()
                self._loop.add_writer(self.master, ready.set_result, None)
                try:
                    await ready
                finally:
                    self._loop.remove_writer(self.master)

    # --- ending -------------------------------------------------------------------------------
    async def close(self, grace_s: float = 2.0) -> None:
        """Hang up the terminal's process group, then kill what is left; wait for the end."""
        for sig in (signal.SIGHUP, signal.SIGKILL):
            if self.done.is_set():
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), grace_s)
        viewers = list(self.viewers)  # each sends what is left and the exit code, then goes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(v.finished.wait() for v in viewers)), grace_s)
        for v in viewers:
            await v.stream.abort("the session was closed")


class Viewer:
    """One attached client: sends the ring from its offset on, types what the client sends."""

    def __init__(self, session: Session, stream: ByteStream, chunk: int, *,
                 records: bool = False) -> None:  # fmt: skip
        self.session, self.stream = session, stream
        #: The platform sends records (typed bytes and resizes), not raw typed bytes.
        self._records = records
        self.cursor = session.ring.start  # the scrollback first
        self.wake = asyncio.Event()
        self.finished = asyncio.Event()
        #: Took nothing for STALL_S while the session waited on it: the session goes on
        #: without it, and it is told what it missed when it reads again.
        self.stalled = False
        self.progress_at = time.monotonic()
        self._dropped = 0
        self._chunk = chunk - ss.RECORD_HEADER

    async def run(self) -> None:
        self.session.viewers.add(self)
        try:
            await relay(self._output(), self._input(), until="either")
        except StreamAborted as exc:
            log.info("session.viewer_aborted", session_id=self.session.id, reason=exc.message)
        except ss.RecordError as exc:
            log.warning("session.bad_input", session_id=self.session.id, error=str(exc))
            await self.stream.abort(f"bad input from the platform: {exc}")
        except Exception as exc:  # a task boundary: one viewer never takes the session down
            log.exception("session.viewer_failed", session_id=self.session.id, error=repr(exc))
        finally:
            self.session.viewers.discard(self)
            self.session.progressed()
            if self.stream.error is None and not self.stream.ended:  # the client detached
                with contextlib.suppress(StreamAborted):
                    await self.stream.end()
            await self.stream.aclose()
            self.finished.set()

    async def _output(self) -> None:
        s, ring = self.session, self.session.ring
        while True:
            if self.cursor < ring.start:  # only once stalled: it missed output, say so
                self._dropped += ring.start - self.cursor
                self.cursor = ring.start
            if self._dropped:
                await self.stream.send(ss.encode_notice(ss.Dropped(bytes=self._dropped)))
                self._dropped = 0
            data = ring.read(self.cursor, self._chunk)
            if data:
                await self.stream.send(ss.encode_record(ss.RecordKind.OUTPUT, data))
                self.cursor += len(data)
                self.progress_at = time.monotonic()
                self.stalled = False
                s.progressed()
                continue
            if s.done.is_set():
                await self.stream.end(s.exit_code)
                return
            self.wake.clear()
            await self.wake.wait()

    async def _input(self) -> None:
        reader = ss.RecordReader(ss.FROM_PLATFORM) if self._records else None
        async for chunk in self.stream:  # credit goes back once the terminal took the bytes
            if reader is None:
                await self.session.write(chunk)
                continue
            for kind, payload in reader.feed(chunk):  # in order: a resize between two keys
                if kind is ss.RecordKind.INPUT:
                    await self.session.write(payload)
                else:
                    self.session.resize(*ss.decode_resize(payload))
        # The client detached (its end frame): this viewer is done, the session goes on.
