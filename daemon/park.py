"""The daemon's NATS connection let go for a pause, and taken back at once after the resume
(docs/stop-start.md).

gVisor's checkpoint refuses a TCP endpoint that is connected, or that closed actively in the
last minute (TIME_WAIT), and a refused checkpoint ends the sandbox. So on the pause's signal
the daemon flushes what it has to send, then resets its connection (``SO_LINGER {1, 0}``: an
RST, no TIME_WAIT) and makes nats-py wait without end before reconnecting; on the resume's
signal it reconnects at once, its subscriptions replayed by nats-py. NATS does not deliver a
request again, so nothing answered before the pause runs twice; what the daemon published
while parked (heartbeats, a late reply) goes out on the reconnect.

nats-py has no public way to hold a reconnect: the wait is its ``reconnect_to_server_handler``'s
delay, cut short by starting its reconnect again (``Client._attempt_reconnect``; nats-py 2.x).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

#: How long a parked connection waits for the resume's signal before it reconnects anyway.
PARKED_WAIT_S = 24 * 3600.0
_RST_ON_CLOSE = struct.pack("ii", 1, 0)


class Parking:
    """nats-py's reconnect server handler, and the park and unpark of one connection."""

    def __init__(self) -> None:
        self.parked = False
        #: The wait between reconnect attempts (nats-py's ``reconnect_time_wait``).
        self.wait_s = 0.0
        self._last_try = 0.0
        self._turn = -1

    def choose(self, servers: list[Any], _info: dict[str, Any]) -> tuple[Any, float]:
        """nats-py's server pick and the wait before the next attempt: as nats-py waits without
        a handler, unless parked. The servers are taken in turn: given None, nats-py takes the
        pool's first every time, and a cluster's dead first node would be tried for ever."""
        if self.parked:
            return None, PARKED_WAIT_S
        now = time.monotonic()
        delay = max(0.0, self._last_try + self.wait_s - now)
        self._last_try = now + delay
        if not servers:
            return None, delay
        self._turn += 1
        return servers[self._turn % len(servers)], delay

    async def park(self, nc: NATS) -> bool:
        """Send what is buffered, then reset the connection; False if it was not connected."""
        if self.parked or not nc.is_connected:
            return False
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.flush(timeout=2)
        self.parked = True
        sock = _socket_of(nc)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_ON_CLOSE)
        await nc.force_reconnect()  # closes the transport, then waits in ``choose``
        return True

    async def unpark(self, nc: NATS) -> bool:
        """Reconnect at once; False if it was not parked."""
        if not self.parked:
            return False
        self.parked = False
        self._last_try = 0.0
        waiting = nc._reconnection_task
        if waiting is not None and not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        if nc.is_reconnecting:
            task = asyncio.get_running_loop().create_task(nc._attempt_reconnect())
            nc._reconnection_task = task
        return True


def _socket_of(nc: NATS) -> socket.socket | None:
    transport = nc._transport
    writer = getattr(transport, "_io_writer", None)
    return None if writer is None else writer.get_extra_info("socket")
