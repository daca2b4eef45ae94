"""Codemode over SSE: ``POST /codemode/run`` starts a run and streams its events live.

The body is ``codemode.run``'s params; the answer is ``text/event-stream``: one message per
run event (``event: <type>``, ``id: <seq>``, ``data: <event JSON>``), then ``event: end`` whose
data is the ``codemode.run`` result (or ``{"error": ...}``). The gateway subscribes to the run's
events before handing it to the codemode service, so none is missed. Token auth as ``/rpc``;
the run spends ``codemode.run``'s budget and holds one of its token's stream slots, both taken
before the stream begins (past either: a plain error, 429); a client that reads nothing for
``FLEET_CLIENT_WRITE_TIMEOUT_S`` is taken for gone (``stream_rules``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import msgspec
import structlog
from aiohttp import web
from nats.aio.msg import Msg

from base.clock import Clock, within
from base.first import first_of
from contracts.bus import subjects
from contracts.errors import FleetError, InternalError, ParseError
from contracts.gateway.codemode import (
    CODEMODE_RUN,
    RUN_STREAM_END,
    RUN_STREAM_PATH,
    RunJob,
    RunParams,
    RunResult,
)
from contracts.rpc.jsonrpc import invalid_params
from controlplane.bus import Bus
from services.gateway.auth import Caller
from services.gateway.errors_http import error_response
from services.gateway.rpc import CodemodeOps
from services.gateway.streams.rules import StreamRules
from services.gateway.streams.sse import SseStream

log = structlog.get_logger(__name__)
#: Events buffered for a slow reader before the stream is cut (the run goes on).
MAX_BACKLOG = 10_000
#: How long the end of a run's events may trail its answer.
TAIL_WAIT_S = 2.0
TERMINAL_TYPES = frozenset({"result", "error", "cancelled"})
_PARAMS = msgspec.json.Decoder(RunParams)


class _Head(msgspec.Struct):
    type: str
    seq: int


_ENC = msgspec.json.Encoder()


def add_codemode_routes(
    app: web.Application, bus: Bus, ops: CodemodeOps, caller_key: web.RequestKey[Caller],
    rules: StreamRules,
) -> None:  # fmt: skip
    async def run(request: web.Request) -> web.StreamResponse:
        return await stream_run(request, bus, ops, request[caller_key], rules)

    app.router.add_post(RUN_STREAM_PATH, run)


async def stream_run(
    request: web.Request, bus: Bus, ops: CodemodeOps, caller: Caller, rules: StreamRules
) -> web.StreamResponse:
    try:
        params = _PARAMS.decode(await request.read())
        with rules.slot(caller):
            rules.limits.spend(CODEMODE_RUN, caller)
            job = await ops.prepare(params, caller)
            return await _streamed(request, bus, ops, caller, job, rules)
    except msgspec.ValidationError as exc:
        return error_response(invalid_params(exc))
    except msgspec.DecodeError as exc:
        return error_response(ParseError(f"the body is not JSON: {exc}"))
    except FleetError as exc:  # before the stream began
        return error_response(exc)


async def _streamed(request: web.Request, bus: Bus, ops: CodemodeOps, caller: Caller,
                    job: RunJob, rules: StreamRules) -> web.StreamResponse:  # fmt: skip
    queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_BACKLOG)

    async def on_event(msg: Msg) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(msg.data)

    sub = await bus.nc.subscribe(subjects.codemode_events(job.run_id), cb=on_event)
    resp, stream = await SseStream.open(request, rules.clock, writes=rules.writes)
    run = asyncio.create_task(ops.execute(job, caller))
    try:
        ended = await _forward(stream, queue, run)
        if not ended:
            await _drain(stream, queue, rules.clock)
        await asyncio.wait({run})  # the terminal event can come before the answer
        await stream.event(_end(run), name=RUN_STREAM_END)
    except asyncio.CancelledError:
        log.info("codemode.stream_closed", run_id=job.run_id)  # the run goes on to its end
        raise
    except ConnectionResetError:  # the client left, or read nothing for the write timeout
        log.info("codemode.stream_closed", run_id=job.run_id)  # the run goes on to its end
    finally:
        await sub.unsubscribe()
    return resp


async def _forward(
    stream: SseStream, queue: asyncio.Queue[bytes], run: asyncio.Task[RunResult]
) -> bool:
    """Events until the run ends; True when its terminal event was among them."""
    while not run.done():
        # The run's end, not its outcome, and the run goes on when an event wins.
        which, data = await first_of(queue.get(), asyncio.wait({run}))
        if which == 0 and await _write_event(stream, cast(bytes, data)):
            return True
    return False


async def _drain(stream: SseStream, queue: asyncio.Queue[bytes], clock: Clock) -> None:
    """The events published before the answer but not yet delivered: up to the terminal one
    (the service publishes it before it answers), or ``TAIL_WAIT_S`` of ``clock``'s time if it
    never comes."""

    async def until_terminal() -> None:
        while not await _write_event(stream, await queue.get()):
            pass

    with contextlib.suppress(TimeoutError):
        await within(clock, TAIL_WAIT_S, until_terminal())


async def _write_event(stream: SseStream, data: bytes) -> bool:
    """Writes one event; True when it ends the run."""
    try:
        head = msgspec.json.decode(data, type=_Head)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    await stream.event(data, name=head.type, seq=head.seq)
    return head.type in TERMINAL_TYPES


def _end(run: asyncio.Task[RunResult]) -> bytes:
    exc = run.exception()
    if exc is None:
        return _ENC.encode(run.result())
    if not isinstance(exc, FleetError):
        log.error("codemode.stream_run_failed", error=repr(exc))
        exc = InternalError("the run failed")
    return _ENC.encode({"error": exc.to_wire()})
