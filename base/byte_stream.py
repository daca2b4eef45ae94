"""One endpoint of a byte stream (contracts.daemon.streams): the same class on the daemon and on the
platform.

    stream = ByteStream(stream_id, publish)   # publish(frame): to the peer's side subject
    await stream.start()                      # grants the first window, starts the keepalive
    # every frame from the peer's subject:  await stream.feed(msg.data)
    await stream.send(data)     # split into chunks; waits while the peer's credit is spent
    chunk = await stream.receive()   # the next chunk; b"" once the peer ended; grants credit
    await stream.end(code)      # this direction is done (the other may go on: a half close)
    await stream.abort(reason)  # both directions are torn down; the peer's calls raise
    await stream.aclose()       # always, when done with it (an ``async with`` does it)

Bounded everywhere: the receive buffer never holds more than ``window`` bytes, because the
peer may only send what was granted, and a peer that sends more (or skips a chunk, or sends
garbage) gets the stream aborted rather than a bigger buffer. ``send`` holds only the caller's
own bytes. Credit is granted as the consumer calls ``receive``, so a slow consumer slows the
sender all the way back. A peer silent for ``peer_timeout_s`` (each side re-grants every
``keepalive_s`` even when idle) has vanished: every waiting call raises ``StreamAborted``.

``end_code`` is the peer's end frame's code once ``receive`` returned b"".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

import nats.errors
import structlog

from base.ticker import Ticker
from contracts.daemon import streams as s
from contracts.errors import StreamAborted

log = structlog.get_logger(__name__)

Publish = Callable[[bytes], Awaitable[None]]


class StreamClosed(StreamAborted):
    """This side already ended, aborted or closed the stream."""


class ByteStream:
    def __init__(
        self,
        stream_id: str,
        publish: Publish,
        *,
        window: int = s.DEFAULT_WINDOW,
        chunk_size: int = s.DEFAULT_CHUNK,
        keepalive_s: float = s.KEEPALIVE_S,
        peer_timeout_s: float = s.PEER_TIMEOUT_S,
        on_close: Callable[[ByteStream], None] | None = None,
    ) -> None:
        if not 0 < chunk_size <= s.MAX_CHUNK or window < chunk_size:
            raise ValueError("need 0 < chunk_size <= MAX_CHUNK and window >= chunk_size")
        self.stream_id = stream_id
        self._publish = publish
        self._window, self._chunk = window, chunk_size
        self._keepalive_s, self._peer_timeout_s = keepalive_s, peer_timeout_s
        self._on_close = on_close
        # receiving
        self._buf: deque[bytes] = deque()
        self._buffered = 0
        self._next_seq = 0
        self._received = 0  # bytes the peer sent in all
        self._consumed = 0  # bytes handed to our consumer
        self._granted = 0  # the limit we granted
        self._readable = asyncio.Event()
        self.peer_ended = False
        self.end_code: int | None = None
        #: The peer ended, then aborted: its data is complete and still delivered.
        self._complete = False
        # sending
        self._seq = 0
        self._sent = 0
        self._limit = 0  # the peer's grant
        self._credit = asyncio.Event()
        self._ended = False
        # both
        self._error: StreamAborted | None = None
        self._aborted = False  # an abort frame went out or came in
        self._heard = time.monotonic()
        self._heard_once = False
        self._listening = asyncio.Event()  # set by the peer's first frame: it has subscribed
        self._closed = False
        self._keepalive = Ticker(keepalive_s, tick=self._keep_alive, name=f"stream-{stream_id}",
                                 failed_event="stream.keepalive_round_failed")  # fmt: skip
        #: A keepalive failed on the link: noticing that is the peer timeout's job, on both
        #: sides, so this side re-grants no more.
        self._link_lost = False

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> ByteStream:
        """Grant the first window and keep the peer posted that we are here."""
        self._heard = time.monotonic()
        self._granted = self._window
        await self._publish(s.encode_credit(self._granted))
        await self._keepalive.__aenter__()
        return self

    async def __aenter__(self) -> ByteStream:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is not None and self._error is None and not self._closed:
            await self.abort(f"{type(e).__name__}: {e}" if isinstance(e, Exception) else "gone")
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the keepalive and forget the stream. Safe to call twice. A stream neither ended
        nor aborted by us is aborted, so the peer never waits for nothing."""
        if self._closed:
            return
        if self._error is None and not self._ended:
            await self.abort("closed by its owner")
        self._closed = True
        self._set_error(StreamClosed("the stream is closed"))
        await self._keepalive.__aexit__(None, None, None)
        if self._on_close is not None:
            self._on_close(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def ended(self) -> bool:
        """This side sent its end frame."""
        return self._ended

    @property
    def error(self) -> StreamAborted | None:
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (never more than the window)."""
        return self._buffered

    # --- from the peer --------------------------------------------------------------------
    async def feed(self, raw: bytes) -> None:
        """One frame from the peer's subject. Never blocks on our consumer."""
        if self._closed or self._error is not None:
            return
        self._heard = time.monotonic()
        try:
            frame = s.decode_frame(raw)
        except s.FrameError as exc:
            await self._fail(f"malformed frame: {exc}")
            return
        if not self._heard_once:
            self._heard_once = True
            self._listening.set()
            # Our first grant may have gone out before the peer listened (the daemon's, sent
            # before its open answer reached the platform): repeat it now that it does.
            if not isinstance(frame, s.Abort):
                await self._publish(s.encode_credit(self._granted))
        if isinstance(frame, s.Data):
            await self._on_data(frame)
        elif isinstance(frame, s.Credit):
            if frame.limit > self._limit:
                self._limit = frame.limit
                self._credit.set()
        elif isinstance(frame, s.End):
            if frame.count != self._next_seq:
                await self._fail(f"ended after {frame.count} chunks, {self._next_seq} arrived")
                return
            self.peer_ended, self.end_code = True, frame.code
            self._readable.set()
        else:
            self._aborted = True  # nothing to tell a peer that tore it down itself
            # After its end frame, what the peer sent is complete: still ours to read. (A
            # daemon forgets a stream it ended, and answers a late credit frame with an abort.)
            self._complete = self.peer_ended and self._error is None
            self._set_error(StreamAborted(f"aborted by the peer: {frame.reason}"))

    async def _on_data(self, frame: s.Data) -> None:
        if self.peer_ended:
            await self._fail("data after the end frame")
            return
        if frame.seq != self._next_seq:
            await self._fail(f"chunk {self._next_seq} is missing (got {frame.seq})")
            return
        self._received += len(frame.payload)
        if self._received > self._granted:
            await self._fail(f"the peer sent {self._received} bytes on a {self._granted} credit")
            return
        self._next_seq += 1
        if frame.payload:
            self._buf.append(frame.payload)
            self._buffered += len(frame.payload)
            self._readable.set()

    # --- receiving ------------------------------------------------------------------------
    async def receive(self) -> bytes:
        """The next chunk, b"" once the peer ended; ``StreamAborted`` if the stream broke."""
        while True:
            # An abort voids whatever is still buffered, unless the peer had ended before it.
            if self._error is not None and not self._complete:
                raise self._error
            if self._buf:
                chunk = self._buf.popleft()
                self._buffered -= len(chunk)
                self._consumed += len(chunk)
                if self._error is None:
                    await self._maybe_grant()
                return chunk
            if self.peer_ended:
                return b""
            self._readable.clear()
            try:
                await self._wait(self._readable)
            except StreamAborted:
                if not self._complete:
                    raise

    async def _maybe_grant(self) -> None:
        # Re-grant in half-window steps: one credit frame per few chunks, not per chunk.
        limit = self._consumed + self._window
        if limit - self._granted >= self._window // 2 and not self.peer_ended:
            self._granted = limit
            await self._publish(s.encode_credit(limit))

    def __aiter__(self) -> ByteStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    # --- sending --------------------------------------------------------------------------
    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` in chunks, waiting for credit whenever the peer's grant is spent."""
        view = memoryview(data)
        while view:
            self._check_can_send()
            room = self._limit - self._sent
            if room <= 0:
                self._credit.clear()
                await self._wait(self._credit)
                continue
            n = min(len(view), self._chunk, room)
            frame = s.encode_data(self._seq, view[:n])
            self._seq += 1
            self._sent += n
            await self._publish(frame)
            view = view[n:]

    @property
    def credit(self) -> int:
        """Bytes we may send right now without waiting."""
        return max(0, self._limit - self._sent)

    async def end(self, code: int | None = None) -> None:
        """Nothing more comes from this side (``code``: an exit code, if there is one). Not
        before the peer was heard from once: data waits for its credit anyway, but an end with
        nothing before it (an empty file) could reach a peer not yet subscribed, and be lost."""
        self._check_can_send()
        if not self._heard_once:
            await self._wait(self._listening)
            self._check_can_send()
        self._ended = True
        await self._publish(s.encode_end(self._seq, code))

    async def abort(self, reason: str) -> None:
        """Tear the stream down on both sides; our own waiting calls raise too."""
        if self._closed or self._aborted:
            return
        self._aborted = True
        self._set_error(StreamAborted(f"aborted: {reason}"))
        with contextlib.suppress(Exception):  # the link may be gone: the peer then times out
            await self._publish(s.encode_abort(reason))

    def _check_can_send(self) -> None:
        if self._error is not None:
            raise self._error
        if self._ended:
            raise StreamClosed("this side of the stream has ended")

    # --- failure and liveness -------------------------------------------------------------
    def _set_error(self, error: StreamAborted) -> None:
        if self._error is None:
            self._error = error
        self._readable.set()
        self._credit.set()

    async def _fail(self, reason: str) -> None:
        log.warning("stream.protocol_error", stream_id=self.stream_id, reason=reason)
        await self.abort(reason)

    async def _wait(self, event: asyncio.Event) -> None:
        """Wait for ``event``; raise if the peer falls silent for too long meanwhile."""
        while not event.is_set():
            left = self._heard + self._peer_timeout_s - time.monotonic()
            if left <= 0:
                await self._fail(f"the peer was silent for {self._peer_timeout_s:g}s")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)
        if self._error is not None:
            raise self._error

    async def _keep_alive(self) -> None:
        """A Ticker's round, every keepalive_s: re-grant (our liveness for the peer), and
        notice a silent peer even when nothing waits on this stream."""
        if self._error is not None or self._link_lost:
            return
        if time.monotonic() - self._heard > self._peer_timeout_s:
            await self._fail(f"the peer was silent for {self._peer_timeout_s:g}s")
            return
        try:
            await self._publish(s.encode_credit(self._granted))
        except (nats.errors.Error, StreamAborted, OSError) as exc:
            self._link_lost = True
            log.debug("stream.keepalive_failed", stream_id=self.stream_id, error=repr(exc))
