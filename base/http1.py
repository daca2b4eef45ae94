"""HTTP/1.1's client side over asyncio's streams, framed and parsed by h11 (python-hyper's
sans-I/O implementation) rather than by hand: each read is bounded by the size asked for, and
h11 bounds a head (``h11.Connection(max_incomplete_event_size=...)``)."""

from __future__ import annotations

import asyncio

import h11


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader, size: int) -> object:
    """``conn``'s next event, fed from ``reader`` at most ``size`` bytes a read (its end too:
    a body cut short is then h11's ``RemoteProtocolError``)."""
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(size))
    return event


async def response_head(
    conn: h11.Connection, reader: asyncio.StreamReader, size: int
) -> h11.Response:
    """The answer's head, past any 1xx (an end of the connection before it: h11's error)."""
    while not isinstance(event := await next_event(conn, reader, size), h11.Response):
        pass
    return event
