"""What bounds the load one machine puts on its host's DNS proxy (providers/egress/dns.py).

- A cap per machine: at most ``concurrency`` of its queries at once, and at most ``rate`` a
  second (a token bucket of ``burst``). A query past either is answered REFUSED at once and
  counted as a refusal: nothing of a machine's waits in a queue of the proxy's, so one machine
  cannot hold the host's provisioner (its tasks, its memory) with a flood.
- Upstream queries hold no thread: each is a UDP socket of the event loop's, waited for with a
  timeout. A silent upstream costs a socket and a timer per query in flight, within the cap,
  never a worker of the default executor (which runs the provisioner's policy loads, image
  unpacks and home copies).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

UPSTREAM_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class DnsCaps:
    """One machine's allowance (``FLEET_EGRESS_DNS_RATE``, ``FLEET_EGRESS_DNS_CONCURRENCY``)."""

    #: Queries a second, on average.
    rate: float = 50.0
    #: Queries at once before the rate applies (a page load asks for a few dozen names).
    burst: int = 100
    #: Queries in flight (UDP and TCP together), and TCP connections open.
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.concurrency < 1:
            raise ValueError(f"DNS caps must be positive: {self}")


@dataclass
class Gate:
    """One machine's cap: ``enter`` admits a query (then ``leave`` when it is answered)."""

    caps: DnsCaps
    now: float
    tokens: float = field(init=False)
    in_flight: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self.tokens = float(self.caps.burst)

    def enter(self, now: float) -> bool:
        """Whether a query may go on now (False: refuse it)."""
        self.tokens = min(float(self.caps.burst), self.tokens + (now - self.now) * self.caps.rate)
        self.now = now
        if self.in_flight >= self.caps.concurrency or self.tokens < 1:
            return False
        self.tokens -= 1
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1


class _Reply(asyncio.DatagramProtocol):
    """The reply to one query: the first datagram from the upstream with the query's id (the
    socket is connected to the upstream, so the kernel drops anybody else's)."""

    def __init__(self, qid: bytes, reply: asyncio.Future[bytes]) -> None:
        self.qid, self.reply = qid, reply

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data[:2] == self.qid and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def ask(
    upstream: tuple[str, int], data: bytes, timeout_s: float = UPSTREAM_TIMEOUT_S
) -> bytes:
    """``data`` asked of ``upstream`` over UDP; its reply, or TimeoutError."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Reply(data[:2], reply), remote_addr=upstream
    )
    try:
        transport.sendto(data)
        async with asyncio.timeout(timeout_s):
            return await reply
    finally:
        transport.close()
