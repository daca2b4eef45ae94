"""The gateway's one writer of server-sent events: ``GET /events``, ``POST /rpc/stream`` and
``POST /codemode/run`` answer through it (``contracts.gateway.sse`` spells each frame).

    stream = await SseStream.open(request, clock, keepalive_s=1.0, writes=rules.writes)
    await stream.event(data, name="output")
    await stream.keep_alive()          # a comment, once it has been quiet for keepalive_s
    await stream.dropped(n)            # what a slow client missed, before the answer
    await stream.error(exc)            # the stream ends on an error
    await stream.end()

A stream writes through its ``Writes``: the response itself, or the rules' writes that end a
stream whose client reads nothing for the write timeout (``stream_rules``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import msgspec
from aiohttp import web

from base.clock import Clock
from contracts.errors import FleetError
from contracts.gateway import sse
from contracts.gateway.live import SSE_DROPPED
from services.gateway.streams.rules import Writes

#: Every stream's headers: event-stream, neither cached nor buffered by a proxy on the way.
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_KEEPALIVE = sse.comment("keepalive")


class SseStream:
    """``out``: where its frames go; a keepalive comment after ``keepalive_s`` of ``clock``'s
    time without a write (None: none)."""

    def __init__(self, out: Writes, clock: Clock, keepalive_s: float | None = None) -> None:
        self._out = out
        self._clock = clock
        self.keepalive_s = keepalive_s
        self._written = clock.monotonic()

    @classmethod
    async def open(
        cls,
        request: web.Request,
        clock: Clock,
        *,
        keepalive_s: float | None = None,
        writes: Callable[[web.Request, web.StreamResponse], Writes] | None = None,
    ) -> tuple[web.StreamResponse, SseStream]:
        """The response, prepared, and its stream; ``writes``: how its writes are made (by
        default the response's own)."""
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        out = writes(request, resp) if writes is not None else resp
        return resp, cls(out, clock, keepalive_s)

    async def write(self, frame: bytes) -> None:
        await self._out.write(frame)
        self._written = self._clock.monotonic()

    async def event(self, data: bytes, *, name: str | None = None, seq: int | None = None) -> None:
        await self.write(sse.frame(name, data, seq=seq))

    async def comment(self, text: str) -> None:
        await self.write(sse.comment(text))

    def keepalive_in(self) -> float:
        """Seconds of ``clock``'s time until a keepalive is due (inf: never)."""
        if self.keepalive_s is None:
            return float("inf")
        return max(0.0, self._written + self.keepalive_s - self._clock.monotonic())

    async def keep_alive(self) -> None:
        """A keepalive comment if the stream has been quiet for ``keepalive_s``; it fails once
        the client has gone."""
        if self.keepalive_s is not None and self.keepalive_in() <= 0:
            await self.write(_KEEPALIVE)

    async def dropped(self, parts: int) -> None:
        """How many parts the client was too slow for (``event: dropped``)."""
        await self.event(b'{"parts": %d}' % parts, name=SSE_DROPPED)

    async def error(self, error: FleetError) -> None:
        """The ``event: error`` that ends the stream with ``error``."""
        await self.event(msgspec.json.encode(error.to_wire()), name=sse.ERROR)

    async def end(self) -> None:
        """The end of the stream; a client that has its answer may have left already."""
        with contextlib.suppress(ConnectionError):
            await self._out.write_eof()
