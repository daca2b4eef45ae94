"""A VNC viewer's side of RFB 3.8 (RFC 6143), as much of it as an attacker needs: the
handshake (which security types a server offers), a session without a password, a pointer
event, and a barrier that returns once the server has handled what was sent before it.

It speaks over a WebSocket whose binary messages carry the protocol's bytes: a tunnel's
(``fleet machines forward``'s, ``GET TUNNEL_PATH``) or websockify's (the live view's)."""

from __future__ import annotations

import struct

from aiohttp import ClientWebSocketResponse, WSMsgType

#: The security type that asks nothing of the viewer.
NONE = 1
VERSION = b"RFB 003.008\n"
#: Client-to-server message types.
_FRAMEBUFFER_UPDATE_REQUEST = 3
_POINTER_EVENT = 5
#: Server-to-client message types this client reads past.
_FRAMEBUFFER_UPDATE = 0
_BELL = 2
_SERVER_CUT_TEXT = 3


class Rfb:
    def __init__(self, ws: ClientWebSocketResponse, timeout_s: float = 30.0) -> None:
        self._ws = ws
        self._timeout_s = timeout_s
        self._got = b""

    async def security_types(self) -> list[int]:
        """The server's greeting answered: the security types it offers (none: it refused)."""
        greeting = await self._read(12)
        assert greeting.startswith(b"RFB "), greeting
        await self._ws.send_bytes(VERSION)
        count = (await self._read(1))[0]
        return list(await self._read(count))

    async def open_without_password(self) -> tuple[int, int]:
        """After ``security_types`` offered ``NONE``: a shared session; the screen's size."""
        await self._ws.send_bytes(bytes([NONE]))
        assert await self._read(4) == b"\0\0\0\0", "the server refused the session"
        await self._ws.send_bytes(b"\1")  # ClientInit: shared
        width, height = struct.unpack(">HH", await self._read(4))
        await self._read(16)  # the pixel format
        (name_length,) = struct.unpack(">I", await self._read(4))
        await self._read(name_length)
        return width, height

    async def point(self, x: int, y: int, buttons: int = 0) -> None:
        await self._ws.send_bytes(struct.pack(">BBHH", _POINTER_EVENT, buttons, x, y))

    async def handled(self) -> None:
        """Once the server has handled every message sent before this one: it answers a
        request for one pixel after them, in order."""
        request = struct.pack(">BBHHHH", _FRAMEBUFFER_UPDATE_REQUEST, 0, 0, 0, 1, 1)
        await self._ws.send_bytes(request)
        while (kind := (await self._read(1))[0]) != _FRAMEBUFFER_UPDATE:
            if kind == _SERVER_CUT_TEXT:
                (length,) = struct.unpack(">I", (await self._read(7))[3:])
                await self._read(length)
            else:
                assert kind == _BELL, f"unexpected server message {kind}"

    async def _read(self, n: int) -> bytes:
        while len(self._got) < n:
            msg = await self._ws.receive(timeout=self._timeout_s)
            if msg.type is not WSMsgType.BINARY:
                raise EOFError(f"the server's bytes ended ({msg.type.name} {msg.data!r})")
            self._got += msg.data
        out, self._got = self._got[:n], self._got[n:]
        return out
