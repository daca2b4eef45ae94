"""A local terminal joined to a session's WebSocket: `fleet machines shell` and `sessions attach`.

The local tty goes raw (every key, Ctrl-C included, goes to the remote terminal as a byte) and
comes back as it was, however the session ends. SIGWINCH sends the new size. ``Enter ~ .``
detaches, as in ssh (``~ ~`` sends one ``~``); the session runs on. With stdin not a terminal
(a pipe), its bytes are typed as they come and its end simply stops the typing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from dataclasses import dataclass

import aiohttp
import msgspec

from contracts.gateway import sessions as gs

_CONTROL = msgspec.json.Decoder(gs.ServerControl)
_NEWLINES = frozenset(b"\r\n")


class DetachKeys:
    """Finds ``Enter ~ .`` in typed bytes; holds back a ``~`` until it knows what follows."""

    def __init__(self) -> None:
        self._line_start = True
        self._tilde = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send, whether the user asked to detach)."""
        out = bytearray()
        for byte in data:
            if self._tilde:
                self._tilde = False
                if byte == ord("."):
                    return bytes(out), True
                out += b"~" if byte == ord("~") else bytes([ord("~"), byte])
            elif self._line_start and byte == ord("~"):
                self._tilde = True
                continue
            else:
                out.append(byte)
            self._line_start = byte in _NEWLINES
        return bytes(out), False


@dataclass
class Outcome:
    #: The remote command's exit code; None when the user detached or the session was lost.
    exit_code: int | None = None
    detached: bool = False
    lost: str = ""


async def run(ws: aiohttp.ClientWebSocketResponse) -> Outcome:
    """Join this process's stdin/stdout to ``ws`` until the session exits or the user detaches."""
    stdin = sys.stdin.fileno()
    raw = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if raw else None
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    try:
        if raw:
            tty.setraw(stdin)
            await _send_size(ws)
            loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(_send_size(ws)))
        typing = asyncio.create_task(_type(ws, stdin, outcome))
        try:
            await _show(ws, outcome)
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
    finally:
        if raw:
            loop.remove_signal_handler(signal.SIGWINCH)
            assert saved is not None
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
    return outcome


async def _send_size(ws: aiohttp.ClientWebSocketResponse) -> None:
    size = os.get_terminal_size(sys.stdout.fileno() if os.isatty(1) else 0)
    with contextlib.suppress(ConnectionError, RuntimeError):
        resize = gs.Resize(cols=size.columns, rows=size.lines)
        await ws.send_str(msgspec.json.encode(resize).decode())


async def _type(ws: aiohttp.ClientWebSocketResponse, fd: int, outcome: Outcome) -> None:
    loop = asyncio.get_running_loop()
    keys = DetachKeys()
    ready: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)

    def readable() -> None:
        if ready.full():
            loop.remove_reader(fd)  # back-pressure: read again once the last piece went out
            return
        ready.put_nowait(os.read(fd, 4096))

    loop.add_reader(fd, readable)
    try:
        while data := await ready.get():
            send, detach = keys.feed(data)
            if send:
                await ws.send_bytes(send)
            if detach:
                outcome.detached = True
                await ws.close()
                return
            loop.add_reader(fd, readable)
    finally:
        loop.remove_reader(fd)


async def _show(ws: aiohttp.ClientWebSocketResponse, outcome: Outcome) -> None:
    out = sys.stdout.buffer
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            out.write(msg.data)
            out.flush()
        elif msg.type is aiohttp.WSMsgType.TEXT:
            control = _CONTROL.decode(msg.data)
            if isinstance(control, gs.Exited):
                outcome.exit_code = control.code
            elif isinstance(control, gs.Dropped):
                _note(f"{control.bytes} bytes of output dropped (too slow to show them)")
            else:
                _note(control.message)
        else:  # closed (or the connection failed)
            if ws.close_code == gs.CLOSE_ABORTED:
                outcome.lost = str(msg.extra or "the session was lost")
            elif outcome.exit_code is None and not outcome.detached:
                outcome.lost = "the connection to the gateway closed"
            return


def _note(text: str) -> None:
    sys.stderr.write(f"\r\n[fleet: {text}]\r\n")
    sys.stderr.flush()
