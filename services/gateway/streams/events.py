"""GET /events: machine events as server-sent events.

With ``?machineId=`` the stream starts at that machine's first stored event (so a client that
creates a machine and then subscribes misses nothing); without it, at new events.
``Last-Event-ID`` (or ``?since=``, a stream sequence) resumes after that event. Each message's
``id`` is the stream sequence and its ``data`` the event's JSON. ``event: caught-up`` follows
the last stored event as soon as the replay is done, and comes at once when there was nothing
to replay: a client that wants only what is stored stops there.

Live events come from the gateway's one subscription (``events_hub``); stored ones from a
consumer of the stream's own, up to the stream's last sequence when the client arrived, after
which the live ones take over (each event is sent once, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import nats.errors
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from base.clock import SYSTEM_CLOCK, Clock
from base.first import first_of
from contracts.bus import subjects
from contracts.errors import Forbidden, InvalidParams, NotFound, RateLimited, Unavailable
from contracts.gateway import sse
from contracts.ids import MACHINE_ID_RE
from contracts.people import MACHINES_READ
from controlplane.bus import Bus
from controlplane.failover import TRANSIENT, as_unavailable
from controlplane.store import Store
from services.gateway.auth import EVERYWHERE, Caller, Reach
from services.gateway.errors_http import error_response
from services.gateway.streams.events_hub import QUEUE_LIMIT, EventHub, Subscriber, honest
from services.gateway.streams.sse import SSE_HEADERS, SseStream

log = structlog.get_logger(__name__)

KEEPALIVE_S = 15.0
#: How often a quiet stream checks that its client is still there (aiohttp does not cancel a
#: handler when its client goes; without this a gone client would hold its slot until the next
#: keepalive failed to write).
POLL_S = 1.0
#: A replay that has been told events are pending but receives none for this long gives up.
REPLAY_STALL_S = 10.0
#: JetStream sequences are unsigned 64-bit.
_MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Start:
    machine_id: str | None
    #: Resume after this stream sequence (None: from the machine's first event, or new ones).
    since: int | None

    @property
    def replays(self) -> bool:
        return self.machine_id is not None or self.since is not None


@dataclass(frozen=True)
class EventsContext:
    bus: Bus
    store: Store
    hub: EventHub
    #: Stored-event replays running at once in this gateway.
    replays: asyncio.Semaphore
    #: The time of a stream's keepalives, polls and replay stall.
    clock: Clock = SYSTEM_CLOCK


def parse_start(request: web.Request) -> Start:
    machine_id = request.query.get("machineId")
    if machine_id is not None and not MACHINE_ID_RE.fullmatch(machine_id):
        raise InvalidParams("machineId is not a machine id", field="machineId")
    since = request.headers.get("Last-Event-ID") or request.query.get("since")
    if not since:
        return Start(machine_id, None)
    # isdigit() alone admits "²" and "١٢"; the length check keeps int() cheap.
    if not (since.isascii() and since.isdigit() and len(since) <= 19 and int(since) <= _MAX_SEQ):
        raise InvalidParams("since must be a stream sequence number", field="since")
    return Start(machine_id, int(since))


async def _authorize(start: Start, store: Store, caller: Caller) -> Reach:
    """An instance token may only follow the machines of its instance; what it must hold to go
    on following (an admin's stream: admin)."""
    if caller.admin:
        return EVERYWHERE
    if start.machine_id is None:
        raise Forbidden("an instance token must name one of its machines (?machineId=)")
    reach = Reach((await store.get_machine(start.machine_id)).instance_id, MACHINES_READ)
    caller.require(reach.instance_id, reach.scope)
    return reach


async def _open(
    request: web.Request, ctx: EventsContext, caller: Caller
) -> tuple[Start, Subscriber]:
    start = parse_start(request)
    try:
        reach = await _authorize(start, ctx.store, caller)
    except TRANSIENT as exc:  # the store failing over
        raise as_unavailable(exc) from None
    if not ctx.bus.nc.is_connected:  # nothing live would come: say so rather than go quiet
        raise as_unavailable(nats.errors.ConnectionReconnectingError())
    return start, ctx.hub.open(caller, start.machine_id, reach)  # live events are kept from here


async def stream_events(request: web.Request, ctx: EventsContext, caller: Caller
                        ) -> web.StreamResponse:  # fmt: skip
    try:
        start, sub = await _open(request, ctx, caller)
    except (InvalidParams, Forbidden, NotFound, RateLimited, Unavailable) as exc:
        return error_response(exc)
    resp = web.StreamResponse(headers=SSE_HEADERS)
    stream = SseStream(resp, ctx.clock, KEEPALIVE_S)
    try:
        await resp.prepare(request)
        await stream.comment("connected")
        try:
            floor = await _replay(stream, ctx, start, sub) if start.replays else 0
            if floor is not None:
                await stream.event(b"{}", name=sse.CAUGHT_UP)
                await _pump(request, stream, sub, floor, ctx.clock)
        except TRANSIENT as exc:  # the bus went while replaying: the same as below
            sub.error = as_unavailable(exc)
        if sub.error is not None:  # the stream cannot go on: tell the client why, and end
            await stream.error(sub.error)
    except ConnectionResetError:
        log.debug("events.client_gone")
    finally:
        ctx.hub.close(sub)
    return resp


async def _replay(stream: SseStream, ctx: EventsContext, start: Start, sub: Subscriber
                  ) -> int | None:  # fmt: skip
    """Send the stored events up to the stream's last sequence now; that sequence (live events
    up to it are dropped as already sent), or None when the stream ended meanwhile."""
    info = await ctx.bus.js.stream_info(subjects.STREAM_NAME)
    last = info.state.last_seq
    first = 1 if start.since is None else start.since + 1
    if first > last:
        return last  # nothing stored after the resume point: caught up at once
    async with _turn(ctx.replays, sub) as got:
        if not got:
            return None
        subject = (subjects.machine_events(start.machine_id) if start.machine_id
                   else subjects.ALL_MACHINE_EVENTS)  # fmt: skip
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first)
        stored: asyncio.Queue[Msg] = asyncio.Queue(QUEUE_LIMIT)
        consumer = await ctx.bus.js.subscribe(
            subject, cb=_keep(stored, sub), ordered_consumer=True, config=config,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        )  # fmt: skip
        try:
            if await _nothing_matches(consumer):
                return last
            return await _send_stored(stream, stored, sub, last, ctx.clock)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await consumer.unsubscribe()


@contextlib.asynccontextmanager
async def _turn(slots: asyncio.Semaphore, sub: Subscriber) -> AsyncIterator[bool]:
    """A replay slot, or False when the stream ends while waiting for one."""
    which, _ = await first_of(slots.acquire(), sub.ended.wait())
    if which != 0:
        yield False
        return
    try:
        yield True
    finally:
        slots.release()


def _keep(stored: asyncio.Queue[Msg], sub: Subscriber) -> Callable[[Msg], Awaitable[None]]:
    async def put(msg: Msg) -> None:
        if stored.full():
            sub.overflow.set()
        else:
            stored.put_nowait(msg)

    return put


async def _nothing_matches(consumer: JetStreamContext.PushSubscription) -> bool:
    """The consumer has no stored event to deliver (asked before it delivered any)."""
    try:
        info = await consumer.consumer_info()
    except (nats.errors.Error, TimeoutError):
        return False  # unknown: reading will tell
    # consumer_seq, not stream_seq: the server moves stream_seq past events the filter skips.
    return bool(info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq))


async def _send_stored(stream: SseStream, stored: asyncio.Queue[Msg], sub: Subscriber,
                       last: int, clock: Clock) -> int | None:  # fmt: skip
    sent = 0
    while not sub.ended.is_set():
        if sub.overflow.is_set() and stored.empty():
            await stream.event(b"{}", name=sse.OVERFLOW)
            return None
        msg = await _next(stored, sub.ended, REPLAY_STALL_S, clock)
        if msg is None:
            if not sub.ended.is_set():
                log.warning("events.replay_stalled", after=sent, up_to=last)
                return last
            return None
        seq = msg.metadata.sequence.stream
        if seq > last:
            return last
        if honest(msg):
            await stream.event(msg.data, seq=seq)
        sent = seq
        if seq == last or msg.metadata.num_pending == 0:
            return last
    return None


async def _pump(
    request: web.Request, stream: SseStream, sub: Subscriber, floor: int, clock: Clock
) -> None:
    """Live events after ``floor`` until the stream ends, its client goes or falls too far
    behind; a keepalive after the stream's ``keepalive_s`` of ``clock``'s time without a
    write."""
    while not sub.ended.is_set() and not (sub.overflow.is_set() and sub.queue.empty()):
        if request.transport is None or request.transport.is_closing():
            return
        msg = await _next(sub.queue, sub.ended, min(POLL_S, stream.keepalive_in()), clock)
        if msg is None:
            if not sub.ended.is_set():
                await stream.keep_alive()
            continue
        seq = msg.metadata.sequence.stream
        if seq > floor:
            await stream.event(msg.data, seq=seq)
    if sub.overflow.is_set() and not sub.ended.is_set():
        await stream.event(b"{}", name=sse.OVERFLOW)


async def _next(queue: asyncio.Queue[Msg], stop: asyncio.Event, timeout_s: float,
                clock: Clock) -> Msg | None:  # fmt: skip
    """The next message; None after ``timeout_s`` of ``clock``'s time without one, or when
    ``stop`` is set."""
    if not queue.empty():
        return queue.get_nowait()
    which, got = await first_of(queue.get(), stop.wait(), clock.sleep(timeout_s))
    return cast(Msg, got) if which == 0 else None
