"""One session: a command on a pseudo-terminal or on pipes, its scrollback and its viewers.

The daemon reads the terminal (a pipe session: its stdout and its stderr, each apart) into a
ring of ``SCROLLBACK_BYTES`` and each attached viewer sends on from its own offset in that
ring, as fast as its stream's credit allows. With no
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
from contracts.daemon import sessions as ss
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


class Output:
    """One of a session's outputs: where it is read from, what it is sent as, what is kept."""

    def __init__(self, kind: ss.RecordKind, fd: int) -> None:
        self.kind, self.fd = kind, fd
        self.ring = Ring(ss.SCROLLBACK_BYTES)
        self.reading = False
        self.eof = False


class Session:
    """A command on a terminal (``master``: its output and its input) or on pipes (``outputs``
    stdout and stderr, ``stdin`` or none): either way, read into rings its viewers send from."""

    def __init__(self, *, session_id: str, name: str, argv: list[str], cwd: str, cols: int,
                 rows: int, proc: asyncio.subprocess.Process, outputs: dict[ss.RecordKind, int],
                 stdin: int | None, pty: bool, timeout_s: float | None) -> None:  # fmt: skip
        self.id, self.name, self.argv, self.cwd = session_id, name, argv, cwd
        self.cols, self.rows = cols, rows
        self.proc, self.pty = proc, pty
        self.outputs = [Output(kind, fd) for kind, fd in outputs.items()]
        #: Where input goes (a terminal's master is its output's fd too); None once closed.
        self.stdin = stdin
        self.started_at = time.time()
        self.viewers: set[Viewer] = set()
        self.exit_code: int | None = None
        self.eof = False
        #: Ended with the daemon (its machine stopping), not by itself: viewers are told the
        #: stream broke, not an exit code the command never gave.
        self.lost = False
        self._eof_seen = asyncio.Event()
        self.done = asyncio.Event()  # exited and read to the end
        self._loop = asyncio.get_running_loop()
        self._stall: asyncio.TimerHandle | None = None
        #: A pipe's stdin is closed on its own (a terminal's input is its master, an output).
        self._own_stdin = {stdin} if stdin is not None and not pty else set()
        #: A write waiting for room: woken when its fd closes, so it never waits on a dead fd.
        self._writing: asyncio.Future[None] | None = None
        self._input_lock = asyncio.Lock()
        for fd in {*outputs.values(), *([stdin] if stdin is not None else [])}:
            os.set_blocking(fd, False)
        self._deadline = None if timeout_s is None else self._loop.call_later(
            timeout_s, self._timed_out)  # fmt: skip
        self._resume()
        self._watch = asyncio.create_task(self._wait_exit(), name=f"session-{session_id}")

    def info(self) -> ss.SessionInfo:
        return ss.SessionInfo(
            session_id=self.id, name=self.name, command=self.argv, cwd=self.cwd, cols=self.cols,
            rows=self.rows, pid=self.proc.pid, started_at=round(self.started_at, 3),
            running=self.exit_code is None, exit_code=self.exit_code,
            attached=len(self.viewers), output_bytes=sum(o.ring.end for o in self.outputs),
            pty=self.pty,
        )  # fmt: skip

    def resize(self, cols: int, rows: int) -> None:
        if self.pty and not self.eof:
            set_size(self.outputs[0].fd, cols, rows)  # the kernel sends SIGWINCH to the foreground
        self.cols, self.rows = cols, rows

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the command's process group; False once it has exited."""
        if self.exit_code is not None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)
        return True

    def _timed_out(self) -> None:
        log.info("session.timed_out", session_id=self.id)
        self.signal(signal.SIGKILL)

    # --- reading the outputs ------------------------------------------------------------------
    def _resume(self) -> None:
        for o in self.outputs:
            if not o.reading and not o.eof:
                self._loop.add_reader(o.fd, self._on_readable, o)
                o.reading = True

    def _pause(self) -> None:
        for o in self.outputs:
            if o.reading:
                self._loop.remove_reader(o.fd)
                o.reading = False

    def _on_readable(self, o: Output) -> None:
        # A terminal hands out a few KiB per read: take what is there (up to _READ) in one go,
        # so the viewers send one bigger chunk rather than many small ones.
        pieces: list[bytes] = []
        size, eof = 0, False
        while size < _READ:
            try:
                data = os.read(o.fd, _READ - size)
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
            self._took(o, b"".join(pieces))
        if eof:
            self._loop.remove_reader(o.fd)
            o.reading, o.eof = False, True
            if all(x.eof for x in self.outputs):
                self._at_eof()

    def _took(self, o: Output, data: bytes) -> None:
        o.ring.write(data)
        for v in self.viewers:
            v.wake.set()
        if self._lagging():
            self._pause()
            if self._stall is None:
                self._stall = self._loop.call_later(ss.STALL_S, self._skip_stalled)

    def behind(self, v: Viewer) -> bool:
        """Would the next read overwrite output ``v`` has not been sent yet?"""
        return any(o.ring.end - v.cursors[o.kind] > o.ring.capacity - _READ
                   for o in self.outputs)  # fmt: skip

    def _lagging(self) -> bool:
        return any(self.behind(v) for v in self.viewers if not v.stalled)

    def progressed(self) -> None:
        """A viewer moved on (or left): read again if nobody is a ring behind any more."""
        if not self._lagging():
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            self._resume()

    def _skip_stalled(self) -> None:
        self._stall = None
        now = time.monotonic()
        for v in self.viewers:
            if self.behind(v) and now - v.progress_at >= ss.STALL_S:
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
        if self._deadline is not None:
            self._deadline.cancel()
        if not self.eof:  # a background child may hold the outputs: give it a moment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eof_seen.wait(), _EOF_GRACE_S)
            self._at_eof()
        self.exit_code = exit_code(returncode)
        self._stop_input()  # no write goes on to a closed (and perhaps reused) fd number
        for fd in {o.fd for o in self.outputs} | self._own_stdin:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._own_stdin = set()
        self.done.set()
        for v in self.viewers:
            v.wake.set()
        log.info("session.exited", session_id=self.id, exit_code=self.exit_code)

    # --- input --------------------------------------------------------------------------------
    async def write(self, data: bytes, wait_s: float | None = None) -> int:
        """Type ``data`` (a pipe session: feed its stdin), in order with other writes; waits
        while the input is full, at most ``wait_s`` at once (None: as long as it takes). The
        bytes taken: fewer once the command closed its input, exited, or took none that long."""
        async with self._input_lock:
            view, taken = memoryview(data), 0
            while view and self.stdin is not None and not (self.pty and self.eof):
                try:
                    n = os.write(self.stdin, view)
                except BlockingIOError:
                    if not await self._room(self.stdin, wait_s):
                        break
                    continue
                except OSError:  # EPIPE: the command closed its stdin; EIO: the terminal hung up
                    break
                view, taken = view[n:], taken + n
            return taken

    async def _room(self, fd: int, wait_s: float | None) -> bool:
        """True once ``fd`` takes more; False when the input closed or ``wait_s`` passed."""
        room = self._writing = self._loop.create_future()
        self._loop.add_writer(fd, lambda: None if room.done() else room.set_result(None))
        try:
            done, _ = await asyncio.wait({room}, timeout=wait_s)
        finally:
            self._writing = None
            if self.stdin == fd:  # else _stop_input took its writer off, and the fd may be gone
                self._loop.remove_writer(fd)
        return bool(done) and self.stdin == fd

    def close_stdin(self) -> None:
        """A pipe session's command reads end of file (a terminal's input stays open)."""
        if not self.pty and self.stdin is not None:
            fd = self.stdin
            self._stop_input()
            self._own_stdin.discard(fd)
            os.close(fd)

    def _stop_input(self) -> None:
        if self.stdin is not None and self._writing is not None:
            self._loop.remove_writer(self.stdin)
            if not self._writing.done():
                self._writing.set_result(None)
        self.stdin = None

    # --- ending -------------------------------------------------------------------------------
    async def close(self, grace_s: float = 2.0) -> None:
        """Hang up the command's process group, then kill what is left; wait for the end."""
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
        #: Per output, the offset of the next byte to send: the scrollback first.
        self.cursors = {o.kind: o.ring.start for o in session.outputs}
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
        s = self.session
        while True:
            for o in s.outputs:  # only once stalled: it missed output, say so
                if self.cursors[o.kind] < o.ring.start:
                    self._dropped += o.ring.start - self.cursors[o.kind]
                    self.cursors[o.kind] = o.ring.start
            if self._dropped:
                await self.stream.send(ss.encode_notice(ss.Dropped(bytes=self._dropped)))
                self._dropped = 0
            if await self._send_next():
                continue
            if s.done.is_set():
                if s.lost:
                    await self.stream.abort("the machine is stopping: its sessions end with it")
                else:
                    await self.stream.end(s.exit_code)
                return
            self.wake.clear()
            await self.wake.wait()

    async def _send_next(self) -> bool:
        """Send a chunk of each output that has some; False when none had."""
        sent = False
        for o in self.session.outputs:
            data = o.ring.read(self.cursors[o.kind], self._chunk)
            if data:
                await self.stream.send(ss.encode_record(o.kind, data))
                self.cursors[o.kind] += len(data)
                self.progress_at = time.monotonic()
                self.stalled = False
                sent = True
        if sent:
            self.session.progressed()
        return sent

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
