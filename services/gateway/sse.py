"""GET /events: machine events as server-sent events, straight from the JetStream stream.

With ``?machineId=`` the stream starts at that machine's first event (so a client that creates a
machine and then subscribes misses nothing); without it, at new events. ``Last-Event-ID`` (or
``?since=``, a stream sequence) resumes after a disconnect. Each message's ``id`` is the stream
sequence and its ``data`` the event's JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.ids import MACHINE_ID_RE
from services.common.bus import Bus
from services.common.store import Store
from services.gateway.access import Caller

log = structlog.get_logger(__name__)

KEEPALIVE_S = 15.0
_QUEUE_LIMIT = 10_000


def _start(request: web.Request) -> tuple[str, ConsumerConfig]:
    machine_id = request.query.get("machineId")
    if machine_id is not None and not MACHINE_ID_RE.match(machine_id):
        raise InvalidParams("machineId is not a machine id", field="machineId")
    since = request.headers.get("Last-Event-ID") or request.query.get("since")
    subject = subjects.machine_events(machine_id) if machine_id else subjects.ALL_MACHINE_EVENTS
    if since:
        if not since.isdigit():
            raise InvalidParams("since must be a stream sequence number", field="since")
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=int(since) + 1
        )
    else:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL if machine_id else DeliverPolicy.NEW
        )
    return subject, config


class Streams:
    """The open event streams, so that shutdown can end them at once instead of waiting for
    the server's shutdown timeout."""

    def __init__(self) -> None:
        self._stops: set[asyncio.Event] = set()

    def open(self) -> asyncio.Event:
        stop = asyncio.Event()
        self._stops.add(stop)
        return stop

    def close(self, stop: asyncio.Event) -> None:
        self._stops.discard(stop)

    def end_all(self) -> None:
        for stop in self._stops:
            stop.set()


async def _authorize(request: web.Request, store: Store, caller: Caller) -> None:
    """An instance token may only follow the machines of its instance."""
    if caller.admin:
        return
    machine_id = request.query.get("machineId")
    if machine_id is None:
        raise Forbidden("an instance token must name one of its machines (?machineId=)")
    caller.require((await store.get_machine(machine_id)).instance_id)


class _Inbox:
    """A bounded buffer fed by the subscription: a client that cannot keep up is cut off
    (``overflow``), never buffered forever."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue(_QUEUE_LIMIT)
        self.overflow = asyncio.Event()

    async def put(self, msg: Msg) -> None:
        if self.queue.full():
            self.overflow.set()
        else:
            self.queue.put_nowait(msg)

    def drained(self) -> bool:
        return self.overflow.is_set() and self.queue.empty()


_CAUGHT_UP = b"event: caught-up\ndata: {}\n\n"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no"}  # fmt: skip


async def stream_events(
    request: web.Request, bus: Bus, streams: Streams, store: Store, caller: Caller
) -> web.StreamResponse:
    try:
        subject, config = _start(request)
        await _authorize(request, store, caller)
    except InvalidParams as exc:
        return web.json_response({"error": exc.to_wire()}, status=400)
    except (Forbidden, NotFound) as exc:
        return web.json_response({"error": exc.to_wire()}, status=403)
    inbox = _Inbox()
    sub = await bus.js.subscribe(subject, cb=inbox.put, ordered_consumer=True, config=config,
                                 deliver_policy=config.deliver_policy)  # fmt: skip
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    await resp.prepare(request)
    stop = streams.open()
    try:
        await _pump(resp, inbox, stop, caught_up=await _nothing_stored(sub))
    except ConnectionResetError:
        log.debug("events.client_gone")
    finally:
        streams.close(stop)
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return resp


async def _nothing_stored(sub: Any) -> bool:
    """No stored event matches: the stream is caught up before its first message."""
    try:
        info = await sub.consumer_info()
    except (nats.errors.Error, TimeoutError):
        return False  # unknown: the first message with nothing pending will say it
    return info.num_pending == 0 and not (info.delivered and info.delivered.stream_seq)


async def _pump(
    resp: web.StreamResponse, inbox: _Inbox, stop: asyncio.Event, *, caught_up: bool
) -> None:
    """Events as SSE messages. ``event: caught-up`` follows the last stored event (or comes
    first when there is none): a client that wants only what is stored stops there."""
    await resp.write(b": connected\n\n")
    if caught_up:
        await resp.write(_CAUGHT_UP)
    while not stop.is_set() and not inbox.drained():
        msg = await _next(inbox.queue, stop)
        if msg is None:
            await resp.write(b": keepalive\n\n")
            continue
        seq = msg.metadata.sequence.stream
        await resp.write(b"id: %d\ndata: %s\n\n" % (seq, msg.data))
        if not caught_up and msg.metadata.num_pending == 0:
            caught_up = True
            await resp.write(_CAUGHT_UP)
    if inbox.overflow.is_set():
        await resp.write(b"event: overflow\ndata: {}\n\n")


async def _next(queue: asyncio.Queue[Msg], stop: asyncio.Event) -> Msg | None:
    """The next message; None after KEEPALIVE_S without one, or when the server stops."""
    get = asyncio.ensure_future(queue.get())
    halt = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({get, halt}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
        if not get.done():
            get.cancel()
    return get.result() if get.done() and not get.cancelled() else None
