"""The client side of a tunnel to a machine's port: one WebSocket to the gateway's
``TUNNEL_PATH`` per TCP connection, joined to a local socket (``forward``) or to stdin/stdout
(``tunnel``, an ssh ProxyCommand).

Half-close both ways: local EOF is sent as the ``{"type":"eof"}`` frame, and that frame from
the gateway becomes a ``shutdown(SHUT_WR)`` of the local socket (or the end of stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSMsgType

from base.relay import relay
from contracts.ports import EOF_FRAME, tunnel_path
from fleet.client import FleetClient

#: Bytes read from the local side per WebSocket message.
READ_CHUNK = 256 * 1024


class TunnelBroken(Exception):
    """The tunnel closed before both directions ended (the gateway's close reason says why)."""


async def open_tunnel(
    client: FleetClient, machine_id: str, port: int
) -> aiohttp.ClientWebSocketResponse:
    return await client.websocket(tunnel_path(machine_id, port), max_msg_size=0)


Read = Callable[[], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]
Close = Callable[[], Awaitable[None]]


async def join(ws: aiohttp.ClientWebSocketResponse, read: Read, write: Write,
               write_eof: Close) -> None:  # fmt: skip
    """Relay local bytes (``read``: b"" at EOF) and the WebSocket both ways until both ended."""
    try:
        await relay(_up(ws, read), _down(ws, write, write_eof), until="both")
    finally:
        await ws.close()


async def _up(ws: aiohttp.ClientWebSocketResponse, read: Read) -> None:
    while data := await read():
        await ws.send_bytes(data)
    await ws.send_str(EOF_FRAME)


async def _down(ws: aiohttp.ClientWebSocketResponse, write: Write, write_eof: Close) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await write(msg.data)
        elif msg.type is WSMsgType.TEXT and msg.data == EOF_FRAME:
            await write_eof()
            return
    reason = ws.close_code, (ws.exception() or "")
    raise TunnelBroken(f"the tunnel closed before its end (code {reason[0]}) {reason[1]}")


async def join_socket(
    ws: aiohttp.ClientWebSocketResponse, reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:  # fmt: skip
    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def write_eof() -> None:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    try:
        await join(ws, lambda: reader.read(READ_CHUNK), write, write_eof)
    finally:
        writer.close()


async def join_stdio(ws: aiohttp.ClientWebSocketResponse, stdin: int = 0, stdout: int = 1) -> None:
    """stdin and stdout as the local side; read and written in threads, so any kind of file
    descriptor works (a pipe, a socket, a terminal, a file)."""

    async def read() -> bytes:
        return await asyncio.to_thread(os.read, stdin, READ_CHUNK)

    async def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await asyncio.to_thread(os.write, stdout, view) :]

    async def write_eof() -> None:
        os.close(stdout)  # ssh sees the end of the server's output

    await join(ws, read, write, write_eof)
