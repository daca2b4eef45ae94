"""Server-sent events as the gateway's ``GET /events`` sends them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import msgspec

from contracts.errors import ERROR_HEADER, FleetError, error_from_http, error_from_wire
from contracts.gateway import sse
from fleet.client.sse_lines import EventLines
from fleet.client.transport import Answer, Body


async def sse_messages(
    content: Body, idle_s: float | None, *, stop_caught_up: bool = False
) -> AsyncGenerator[tuple[int, bytes | None], None]:
    """Server-sent event messages: (id, data); (id, None) for ``event: overflow``, which ends
    the stream. With ``idle_s``, the stream also ends after that long without a line; with
    ``stop_caught_up``, at ``event: caught-up``. ``event: error`` raises its error."""
    events = EventLines()
    while True:
        try:
            async with asyncio.timeout(idle_s):
                raw = await content.readline()
        except TimeoutError:
            return
        if not raw:
            return
        if (ended := events.feed(raw)) is None:
            continue
        kind, data = ended
        seq = int(events.id) if events.id else 0
        if kind == OVERFLOW:
            yield seq, None
            return
        if kind == CAUGHT_UP and stop_caught_up:
            return
        if kind == ERROR:  # the stream ends on this error (1501: resume after the last id)
            raise _stream_error(data or b"")
        if data is not None and kind == b"message":
            yield seq, data


OVERFLOW, CAUGHT_UP, ERROR = (n.encode() for n in (sse.OVERFLOW, sse.CAUGHT_UP, sse.ERROR))


def _stream_error(data: bytes) -> FleetError:
    try:
        wire = msgspec.json.decode(data)
    except msgspec.DecodeError:
        wire = None
    if not isinstance(wire, dict):
        return FleetError(f"GET /events ended with an unreadable error: {data[:200]!r}")
    return error_from_wire(wire)


async def check_stream(resp: Answer) -> None:
    """A GET /events answer that is not a stream, as its error: ``Unavailable`` (503, the
    gateway's bus or store failing over) as itself, for the caller to reopen it later."""
    if resp.status == 200:
        return
    raise error_from_http(resp.status, await resp.read(), resp.headers.get(ERROR_HEADER))
