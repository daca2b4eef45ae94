"""What a streamed answer of the gateway's own (``POST /rpc/stream``, codemode's run stream)
owes its caller's limits, and how long its client may leave it unread.

A stream runs something (a command, a code run) and holds what it has not yet written for its
client. So it spends its method's budget (``CallLimits``) as the plain call does, holds one of
its token's stream slots (``ByteStreamSlots``, the bound tunnels and terminals share) for as long
as it is open, and ends when its client stops reading: aiohttp's ``StreamResponse.write`` waits
while the client's socket is full, so a client that never reads would otherwise keep the stream,
its run and everything queued for it for as long as it keeps its connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiohttp import web

from base.clock import SYSTEM_CLOCK, Clock, within
from services.gateway.auth import Caller, CallLimits
from services.gateway.streams.slots import ByteStreamSlots

log = structlog.get_logger(__name__)


class ClientStalled(ConnectionResetError):
    """The client read nothing of its stream for the write timeout: the stream ends as it ends
    for a client that left (a ``ConnectionError``)."""


class Writes(Protocol):
    """What a stream's pump uses of its response."""

    async def write(self, data: bytes) -> None: ...
    async def write_eof(self) -> None: ...


@dataclass(frozen=True)
class ClientWrites:
    """``resp``'s writes, each waiting at most ``timeout_s`` of ``clock``'s time for its client
    to read (0: no limit); past it the connection is aborted (its unsent bytes dropped) and
    ``ClientStalled`` is raised."""

    resp: web.StreamResponse
    transport: asyncio.Transport | None
    timeout_s: float
    clock: Clock = SYSTEM_CLOCK

    async def write(self, data: bytes) -> None:
        await self._bounded(self.resp.write(data))

    async def write_eof(self) -> None:
        await self._bounded(self.resp.write_eof())

    async def _bounded(self, write: Awaitable[None]) -> None:
        if self.timeout_s <= 0:
            await write
            return
        try:
            await within(self.clock, self.timeout_s, write)
        except TimeoutError:
            log.warning("gateway.stream_client_stalled", timeout_s=self.timeout_s)
            if self.transport is not None:
                self.transport.abort()
            raise ClientStalled(f"the client read nothing for {self.timeout_s:g} s") from None


@dataclass(frozen=True)
class StreamRules:
    """The gateway's limits on a streamed answer (see the module): its token's budgets and
    stream slots, and ``write_timeout_s`` (``FLEET_CLIENT_WRITE_TIMEOUT_S``) on ``clock``."""

    limits: CallLimits
    slots: ByteStreamSlots
    write_timeout_s: float
    clock: Clock = SYSTEM_CLOCK

    @contextmanager
    def slot(self, caller: Caller) -> Iterator[None]:
        """One of ``caller``'s stream slots while the stream is open (``TooManyStreams``, 429,
        past them); given back when it ends."""
        release = self.slots.take(caller)
        try:
            yield
        finally:
            release(None)

    def writes(self, request: web.Request, resp: web.StreamResponse) -> ClientWrites:
        return ClientWrites(resp, request.transport, self.write_timeout_s, self.clock)
