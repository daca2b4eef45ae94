"""The daemon's NATS connection let go for a pause, and taken back at once after the resume
(docs/stop-start.md).

gVisor's checkpoint refuses a TCP endpoint that is connected, or that closed actively in the
last minute (TIME_WAIT), and a refused checkpoint ends the sandbox. So on the pause's signal
the daemon flushes what it has to send, then resets its connection (``SO_LINGER {1, 0}``: an
RST, no TIME_WAIT) and makes nats-py wait without end before reconnecting; on the resume's
signal it reconnects at once, its subscriptions replayed by nats-py. NATS does not deliver a
request again, so nothing answered before the pause runs twice; what the daemon published
while parked (heartbeats, a late reply) goes out on the reconnect.

nats-py has no public way to hold a reconnect, nor to cut its wait short (``force_reconnect``
does nothing while it reconnects). So the hold is in its two public hooks: while parked, the
``reconnect_to_server_handler`` (``choose``) raises ``Parked``, which nats-py hands to the
connection's error callback (``on_error``) inside its reconnect loop and, once the callback
returns, asks the handler again; the callback waits in it for the resume's signal. Nothing of
nats-py's own state is written; only its socket is read (``_socket_of``), for the reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

#: How long a parked connection waits for the resume's signal before it tries once anyway.
PARKED_WAIT_S = 24 * 3600.0
_RST_ON_CLOSE = struct.pack("ii", 1, 0)

ErrorCallback = Callable[[Exception], Awaitable[None]]


class Parked(Exception):
    """What ``Parking.choose`` raises while parked: nats-py's reconnect loop gives it to the
    error callback, ``Parking.on_error``, which holds the loop until the resume."""


class Parking:
    """nats-py's reconnect server handler and error callback, and the park and unpark of one
    connection. ``wait_s``: the wait between reconnect attempts (the connection's
    ``reconnect_time_wait``); ``log_error``: what every other error of the connection is
    told to."""

    def __init__(self, wait_s: float, log_error: ErrorCallback) -> None:
        self.parked = False
        self.wait_s = wait_s
        self._log_error = log_error
        self._last_try = 0.0
        self._turn = -1
        #: Set while not parked: what a held reconnect waits for.
        self._unparked = asyncio.Event()
        self._unparked.set()
        #: A held reconnect waited ``PARKED_WAIT_S`` out: it tries once.
        self._try_once = False

    def choose(self, servers: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        """nats-py's server pick and the wait before the next attempt: as nats-py waits without
        a handler, unless parked (``Parked``). The servers are taken in turn: given None,
        nats-py takes the pool's first every time, and a cluster's dead first node would be
        tried for ever."""
        if self.parked and not self._try_once:
            raise Parked("parked for a pause: waiting for the resume")
        self._try_once = False
        now = time.monotonic()
        delay = max(0.0, self._last_try + self.wait_s - now)
        self._last_try = now + delay
        if not servers:
            return None, delay
        self._turn += 1
        return servers[self._turn % len(servers)], delay

    async def on_error(self, exc: Exception) -> None:
        """The connection's error callback: a reconnect held for a pause waits here for the
        resume (``PARKED_WAIT_S`` at most, then it tries once); any other error is logged."""
        if not isinstance(exc, Parked):
            await self._log_error(exc)
            return
        try:
            await asyncio.wait_for(self._unparked.wait(), PARKED_WAIT_S)
        except TimeoutError:
            self._try_once = True

    async def park(self, nc: NATS) -> bool:
        """Send what is buffered, then reset the connection; False if it was not connected."""
        if self.parked or not nc.is_connected:
            return False
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.flush(timeout=2)
        self.parked = True
        self._unparked.clear()
        sock = _socket_of(nc)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_ON_CLOSE)
        await nc.force_reconnect()  # closes the transport, then is held in ``choose``
        return True

    async def unpark(self) -> bool:
        """Reconnect at once; False if it was not parked."""
        if not self.parked:
            return False
        self.parked = False
        self._last_try = 0.0
        self._unparked.set()
        return True


def _socket_of(nc: NATS) -> socket.socket | None:
    transport = nc._transport
    writer = getattr(transport, "_io_writer", None)
    return None if writer is None else writer.get_extra_info("socket")
