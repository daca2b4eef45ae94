"""Opening a byte stream for a caller on a machine: the one path terminals, file transfers,
tunnels and previews take.

    opened, stream = await opener.open(caller, machine_id, d.SESSION_ATTACH, params,
                                       window=..., chunk_size=..., traffic="sent")

In order: one of the caller's stream slots is taken (past its limit nothing is asked of the
daemon), the caller's access to the machine is checked (a stopped or archived machine is
refused at once), the daemon method that opens the stream is called, the platform's side is
joined, and the stream is held for the revocation check (with what it took: the call's scope on
the machine's instance, which the caller must keep holding). Any failure on the way gives the
slot back; once joined, the stream's close does.

The relays that pump an opened stream take any ``ByteStream`` and a ``Socket`` (the client's
side), so a test drives them over an in-memory wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Literal, Protocol, TypeVar

from aiohttp import WSMessage
from nats.aio.client import Client as NATS

from contracts.bus.events import WakeBy
from contracts.rpc.jsonrpc import MethodSpec, P
from controlplane.calls.byte_stream_join import OnTraffic, PlatformStream, join
from controlplane.calls.daemon_client import DaemonClient
from services.gateway.auth import Access, AuditLog, Caller, Reach
from services.gateway.rpc import WAKES
from services.gateway.streams.slots import ByteStreamSlots


class _Opened(Protocol):
    @property
    def stream_id(self) -> str: ...


Opened = TypeVar("Opened", bound=_Opened)
#: What counts as activity on the machine (auto-stop): traffic both ways, what the client
#: sends only (a terminal's typing, not its output), or nothing.
Traffic = Literal["both", "sent", "none"]


class Socket(Protocol):
    """The client's side of a relay: what the relays use of aiohttp's WebSocketResponse."""

    async def send_bytes(self, data: bytes) -> None: ...
    async def send_str(self, data: str) -> None: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...
    def __aiter__(self) -> AsyncIterator[WSMessage]: ...


class ByteStreamOpener:
    def __init__(self, *, slots: ByteStreamSlots, access: Access, daemons: DaemonClient,
                 nc: Callable[[], NATS], audit: AuditLog | None = None) -> None:  # fmt: skip
        self.slots = slots
        self.audit = audit
        self.access = access
        self.daemons = daemons
        self._nc = nc

    async def open(
        self,
        caller: Caller,
        machine_id: str,
        spec: MethodSpec[P, Opened],
        params: P,
        *,
        window: int,
        chunk_size: int,
        traffic: Traffic = "both",
        audit: str | None = None,
        wake: WakeBy | None = None,
        slot: bool = True,
    ) -> tuple[Opened, PlatformStream]:
        """The daemon's answer to ``spec`` and the stream it opened, joined (see the module).
        ``audit``: the action the audit log records for this opening (None: not recorded).
        ``wake``: what wakes a paused or stopped machine (by default, what ``spec`` is).
        ``slot`` False: the caller holds a stream slot for it already (a streamed answer of
        ``POST /rpc/stream``), and none more is taken."""
        try:
            opened, stream = await self._open(caller, machine_id, spec, params, window=window,
                                              chunk_size=chunk_size, traffic=traffic,
                                              wake=wake or WAKES.get(spec.name),
                                              slot=slot)  # fmt: skip
        except Exception as exc:
            self.record(audit, caller, machine_id, params, exc)
            raise
        self.record(audit, caller, machine_id, params, None)
        return opened, stream

    def record(self, action: str | None, caller: Caller, machine_id: str, params: object,
                error: Exception | None) -> None:  # fmt: skip
        if action is not None and self.audit is not None:
            self.audit.record(action, caller=caller, machine_id=machine_id, params=params,
                              error=error)  # fmt: skip

    async def _open(self, caller: Caller, machine_id: str, spec: MethodSpec[P, Opened],
                    params: P, *, window: int, chunk_size: int, traffic: Traffic,
                    wake: WakeBy | None, slot: bool) -> tuple[Opened, PlatformStream]:  # fmt: skip
        release = self.slots.take(caller, counted=slot)
        try:
            machine = await self.access.live_machine(caller, machine_id, wake=wake)
            opened = await self.daemons.call(machine_id, spec, params)
            on_traffic: OnTraffic | None = None
            if traffic != "none":
                on_traffic = partial(self.access.activity.record, machine_id)
            stream = await join(self._nc(), machine_id, opened.stream_id, window=window,
                                chunk_size=chunk_size, on_close=release, on_traffic=on_traffic,
                                traffic_both_ways=traffic == "both")  # fmt: skip
            self.slots.hold(caller, stream, Reach(machine.instance_id, caller.acting))
        except BaseException:
            release(None)
            raise
        return opened, stream
