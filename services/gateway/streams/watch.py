"""``machines.watch``: a path's changes on a machine, streamed to the caller as they happen.

The method answers only through ``POST /rpc/stream`` (services/gateway/streams/exec_stream.py
``stream_rpc``, which gives its caller the stream's ``output``), whose slot and client rules it
runs under: each change is one ``output``
event, what the client reads too slowly for is left out past the stream's bound and counted
(``dropped``), and a client that stalls or leaves ends the watch. The machine's side is a byte
stream opened by ``tool.watch`` (daemon/files/watches.py) through ``ByteStreamOpener`` (the access
check, the revocation check) in the slot ``stream_rpc`` holds. A machine is not trusted: each
line it sends is decoded as a ``FileEvent`` and encoded again, and one that is not (or is
longer than ``MAX_LINE``) cuts the watch.

The watch's end says why, from the machine's status as it is then (paused, stopped,
archived) or else from its daemon's end code (the path removed, the daemon restarted).
"""

from __future__ import annotations

import msgspec
import structlog

from contracts.daemon.watch import (
    WATCH,
    WATCH_CHUNK,
    WATCH_WINDOW,
    FileEvent,
    WatchEnd,
    WatchParams,
)
from contracts.errors import InvalidRequest, StreamAborted
from contracts.gateway.files import MACHINES_WATCH, MachineWatchParams, WatchEnded, WatchEndReason
from contracts.gateway.live import RPC_STREAM_PATH
from contracts.rpc.jsonrpc import handles
from contracts.status import ARCHIVED_OR_ARCHIVING, PAUSE_STATES, STOPPED_OR_STOPPING
from controlplane.calls.byte_stream_join import PlatformStream
from controlplane.calls.daemon_client import OnOutput
from controlplane.store import Store
from services.gateway.auth import Caller
from services.gateway.streams.opener import ByteStreamOpener

log = structlog.get_logger(__name__)
#: The longest line a machine may send for one event (its path is at most 8 KiB).
MAX_LINE = 16 * 1024
_DECODER = msgspec.json.Decoder(FileEvent)
_ENCODER = msgspec.json.Encoder()
_BY_CODE: dict[int | None, tuple[WatchEndReason, str]] = {
    WatchEnd.REMOVED: ("removed", "the watched path was removed or moved away"),
    WatchEnd.PAUSED: ("paused", "the machine was paused"),
    WatchEnd.STOPPING: ("restarted", "the machine's daemon stopped (watch again)"),
}


class MalformedEvent(StreamAborted):
    """The machine sent something that is not a line of a ``FileEvent``."""


class WatchOps:
    def __init__(self, *, opener: ByteStreamOpener, store: Store) -> None:
        self.opener = opener
        self.store = store

    @handles(MACHINES_WATCH)
    async def machines_watch(self, p: MachineWatchParams, c: Caller) -> WatchEnded:
        sink = c.output
        if sink is None:
            await self.opener.access.machine(c, p.machine_id)  # a refusal of rights first
            raise InvalidRequest(f"machines.watch answers as a stream: POST it to "
                                 f"{RPC_STREAM_PATH}")  # fmt: skip
        params = WatchParams(path=p.path, recursive=p.recursive, events=p.events)
        opened, stream = await self.opener.open(
            c, p.machine_id, WATCH, params, window=WATCH_WINDOW, chunk_size=WATCH_CHUNK,
            traffic="none", slot=False,
        )  # fmt: skip
        lines = _Lines(sink)
        cut = None
        async with stream:
            try:
                await _forward(stream, lines)
            except StreamAborted as exc:
                cut = exc.message
                if isinstance(exc, MalformedEvent):
                    await stream.abort(exc.message)
        reason, message = await self._why(p.machine_id, None if cut else stream.end_code, cut)
        log.info("watch.ended", machine_id=p.machine_id, reason=reason, events=lines.count)
        return WatchEnded(reason=reason, message=message, path=opened.path, events=lines.count)

    async def _why(self, machine_id: str, code: int | None,
                   cut: str | None) -> tuple[WatchEndReason, str]:  # fmt: skip
        """Why a watch ended: the machine's state when it is not running, else what its
        daemon said (its end code), else what cut the stream."""
        status = (await self.store.get_machine(machine_id)).status
        if status in PAUSE_STATES:
            return "paused", f"the machine is {status.value}"
        if status in STOPPED_OR_STOPPING:
            return "stopped", f"the machine is {status.value}"
        if status in ARCHIVED_OR_ARCHIVING:
            return "archived", f"the machine is {status.value}"
        if code in _BY_CODE:
            return _BY_CODE[code]
        return "cut", cut or f"the machine ended the watch (code {code})"


class _Lines:
    """A watch's stream cut into lines, each checked and handed on (and counted)."""

    def __init__(self, sink: OnOutput) -> None:
        self.sink = sink
        self.count = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *whole, self._partial = (self._partial + chunk).split(b"\n")
        if len(self._partial) > MAX_LINE:
            raise MalformedEvent(f"the machine sent a line longer than {MAX_LINE} bytes")
        for line in whole:
            try:
                event = _DECODER.decode(line)
            except msgspec.ValidationError as exc:
                raise MalformedEvent(f"the machine sent an event that is not one: {exc}") \
                    from None  # fmt: skip
            except msgspec.DecodeError:
                raise MalformedEvent("the machine sent a line that is not JSON") from None
            self.count += 1
            self.sink(_ENCODER.encode(event))


async def _forward(stream: PlatformStream, lines: _Lines) -> None:
    """Every chunk of the machine's side, as lines, until it ends (or raises)."""
    async for chunk in stream:
        lines.feed(chunk)
