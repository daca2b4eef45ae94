"""Streamed exec: ``machines.execStream`` and ``POST /rpc/stream``.

The method itself is an ordinary handler (validated and access-checked by the dispatcher like
every other): it asks the daemon for ``tool.execStream`` (``MachineClient.exec_stream``, which
the lifecycle commands' output uses too). When the request came through ``POST /rpc/stream``,
the HTTP handler calls it as its caller streaming to a sink (``Caller.output``), and each chunk
goes there, every one before the result. When the client goes away (a Ctrl-C), the HTTP
handler cancels the method, which kills the command's process group on the machine
(``tool.execKill``) before it lets go.
``machines.code.run`` (services/gateway/rpc/code.py) streams its parts through the same sink and
pump.

What a stream holds for a client that reads slower than its machine writes is bounded
(``MAX_HELD_BYTES``): a machine is not trusted, and its daemon may publish on its stream
without end. The bound counts what holding a part costs, not only its bytes (``PART_COST``): a
watch's events are tiny, and counted by their bytes alone they held 2.5 times the bound. Past
the bound a part is left out, and the client is told how many were (``dropped``: the count so
far, said before the next part once it grew, and before the result, which still holds what its
answer may). A client that reads nothing for ``FLEET_CLIENT_WRITE_TIMEOUT_S`` is taken for gone
(``stream_rules``).

Before the stream begins, the request takes one of its token's stream slots and its method's
budget (``StreamRules``): past either it is refused with a plain JSON-RPC error and its HTTP
status (429), as ``POST /rpc`` refuses the plain call, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import msgspec
import structlog
from aiohttp import web

from base.clock import Clock
from base.first import first_of
from contracts.bus.events import WakeBy
from contracts.daemon import rpc as d
from contracts.errors import InvalidRequest, MethodNotFound
from contracts.gateway.live import (
    MACHINES_EXEC_STREAM,
    SSE_OUTPUT,
    SSE_RESULT,
    MachineExecStreamParams,
)
from contracts.gateway.rpc import GATEWAY_METHODS, STREAMING_METHODS
from contracts.rpc.jsonrpc import AnySpec, Dispatcher, handles
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from services.gateway.auth import Access, Caller
from services.gateway.streams.rules import StreamRules
from services.gateway.streams.sse import SseStream

log = structlog.get_logger(__name__)

#: A comment line this often while a command is silent: a client that left is noticed.
KEEPALIVE_S = 1.0
#: The most a stream holds, unwritten, for its client: more than an honest stream sends in
#: all, as a rule (a code run's parts are within its answer's cap, one NATS message, 1 MiB by
#: default; a command's output within 256 KiB a stream); each part counted with ``PART_COST``.
MAX_HELD_BYTES = 8 * 1024 * 1024
#: What holding one part costs the gateway beyond its bytes, on 64-bit CPython 3.11: a bytes
#: object's header (33), the allocator's rounding of it to 16 bytes (up to 15), and its slot
#: in the queue (8.25: a deque's block holds 64 and two links). Measured: 26-byte events held
#: took 72 bytes each of the process's memory, 140-byte ones 166 (each an exact copy, below).
PART_COST = 64
#: The methods ``POST /rpc/stream`` serves, by name.
_STREAMING: dict[str, AnySpec] = {s.name: s for s in GATEWAY_METHODS if s.name in STREAMING_METHODS}


class HeldParts(asyncio.Queue[bytes]):
    """A stream's parts not yet written to its client, within ``limit`` bytes of memory (each
    part its bytes and ``PART_COST``): past it, a part is left out and counted."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = MAX_HELD_BYTES if limit is None else limit
        self.held = 0
        self.dropped = 0

    def offer(self, data: bytes) -> None:
        if self.held + _cost(data) > self.limit:
            self.dropped += 1
            return
        # An exact copy: an encoder's buffer shrunk in place (msgspec's, a watch's events)
        # keeps up to a third more than its bytes, for as long as the part is held.
        self.put_nowait(bytes(memoryview(data)))

    def _put(self, item: bytes) -> None:
        self.held += _cost(item)
        super()._put(item)  # type: ignore[misc]

    def _get(self) -> bytes:
        item: bytes = super()._get()  # type: ignore[misc]
        self.held -= _cost(item)
        return item


def _cost(part: bytes) -> int:
    """What holding ``part`` takes of the gateway's memory."""
    return len(part) + PART_COST


class _Method(msgspec.Struct):
    method: str = ""


class ExecStreamOps:
    def __init__(self, *, daemons: DaemonClient, access: Access, bus: Bus) -> None:
        self.daemons = daemons
        self.access = access
        self.bus = bus

    @handles(MACHINES_EXEC_STREAM)
    async def machines_exec_stream(
        self, p: MachineExecStreamParams, c: Caller
    ) -> d.ExecCommandResult:
        await self.access.live_machine(c, p.machine_id, wake=WakeBy.EXEC)
        params = d.ExecCommandParams(command=p.command, timeout_s=p.timeout_s, cwd=p.cwd,
                                     env=p.env)  # fmt: skip
        mc = self.daemons.machine(p.machine_id)
        return await mc.exec_stream(self.bus.nc, params, c.output)


async def stream_rpc(request: web.Request, dispatcher: Dispatcher[Caller], caller: Caller,
                     body: bytes, rules: StreamRules) -> web.StreamResponse:  # fmt: skip
    """POST /rpc/stream: one streaming JSON-RPC request, answered as server-sent events (a
    keepalive after ``KEEPALIVE_S`` of the rules' clock without output), once it took a
    stream slot and its method's budget (refused: FleetError, before the stream)."""
    try:
        method = msgspec.json.decode(body, type=_Method).method
    except msgspec.DecodeError:
        raise InvalidRequest("the body is not a JSON-RPC request object") from None
    spec = _STREAMING.get(method)
    if spec is None:
        raise MethodNotFound(f"{method!r} cannot be streamed; streaming methods: "
                             f"{', '.join(sorted(STREAMING_METHODS))}")  # fmt: skip
    with rules.slot(caller):
        rules.limits.spend(spec, caller)  # before the stream begins: a refusal is a plain 429
        resp, stream = await SseStream.open(request, rules.clock, keepalive_s=KEEPALIVE_S,
                                            writes=rules.writes)  # fmt: skip
        queue = HeldParts()
        streaming = caller.streaming(queue.offer, prepaid=spec.name)
        call = asyncio.create_task(dispatcher.handle(body, streaming))
        try:
            await _pump(stream, queue, call, rules.clock)
        except ConnectionError:  # the client left (a Ctrl-C) or stalled: the command ends below
            log.info("exec.stream_client_gone", method=method)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
        return resp


async def _pump(stream: SseStream, queue: asyncio.Queue[bytes],
                call: asyncio.Task[bytes | None], clock: Clock) -> None:  # fmt: skip
    told = 0  # the count of left-out parts the client was last told
    while True:
        # The call's end, not its outcome (read below, once its output is written), and the
        # call goes on when a part or the keepalive wins.
        which, part = await first_of(queue.get(), asyncio.wait({call}),
                                     clock.sleep(stream.keepalive_in()))  # fmt: skip
        dropped = queue.dropped if isinstance(queue, HeldParts) else 0
        if dropped > told and which != 1:  # said as it happens: a watch may run for hours
            told = dropped
            await stream.dropped(dropped)
        if which == 0:
            await stream.event(cast(bytes, part), name=SSE_OUTPUT)
            continue
        if which == 1:
            while not queue.empty():  # the method drained its subscription: nothing comes later
                await stream.event(queue.get_nowait(), name=SSE_OUTPUT)
            if isinstance(queue, HeldParts) and queue.dropped:
                log.warning("exec.stream_parts_dropped", parts=queue.dropped)
                await stream.dropped(queue.dropped)
            await stream.event(call.result() or b"null", name=SSE_RESULT)
            await stream.end()  # it has its answer: it may leave now
            return
        await stream.keep_alive()  # fails once the client has gone
