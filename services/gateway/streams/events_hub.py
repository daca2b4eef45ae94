"""One live subscription to the machine events per gateway, fanned out to every open stream.

Not one JetStream consumer per ``GET /events``: 1,000 streams from one token would use up the
server's consumer limit, and every ``/events`` would answer 500. Live events come from one
ordered consumer; a stream that needs stored events first replays them with a consumer of
its own, and only ``max_replays`` of those run at once (``services/gateway/streams/events.py``).

Limits, kept in this process (a stream lives and dies with this process's connection, so a
shared counter would only leak when a replica dies): ``max_per_token`` open streams per
instance token (admins are bounded by the gateway's cap only)
and ``max_streams`` in all, refused with 429 and Retry-After. The gateway's revocation round
(services.gateway.streams.revocation) ends the streams of a revoked token or of a caller who may no
longer see what they follow (removed, demoted), and all of them when the bus is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from types import TracebackType

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.bus import subjects
from contracts.bus.events import decode_event, matches_subject, subject_of
from contracts.errors import FleetError, Forbidden, RateLimited, Unavailable
from controlplane.bus import Bus
from controlplane.failover import RETRY_AFTER_MS
from controlplane.store import Store
from services.gateway.auth import OPERATOR, Caller, Reach

log = structlog.get_logger(__name__)

#: Retry-After of a stream refused for a cap: streams are long-lived, a slot frees slowly.
FULL_RETRY_AFTER_S = 5
#: Events buffered per stream; a client that falls this far behind is cut off (``overflow``).
QUEUE_LIMIT = 10_000
#: The live subscription's idle heartbeat. Its ordered consumer lives in the server's memory
#: and is gone after a restart or a failover; nats-py re-creates it (from the next sequence,
#: losing nothing) once a check, every two heartbeats, finds none came since the last: live
#: events resume within four of these (nats-py's default, 5 s, held them back up to 20 s).
#: One small message a second per gateway.
LIVE_HEARTBEAT_S = 1.0


class Subscriber:
    """One open stream: the live events it wants, buffered until its pump sends them."""

    def __init__(self, caller: Caller, machine_id: str | None, reach: Reach) -> None:
        self.caller = caller
        self.machine_id = machine_id
        #: What the caller must still hold for the stream to stay open.
        self.reach = reach
        self.queue: asyncio.Queue[Msg] = asyncio.Queue(QUEUE_LIMIT)
        self.overflow = asyncio.Event()
        #: Set when the stream must end: the gateway stops, the token was revoked, its caller
        #: may no longer see the machine (``error``: Forbidden), or the gateway lost its bus
        #: (then ``error`` says so, for the client to resume).
        self.ended = asyncio.Event()
        self.error: FleetError | None = None

    def offer(self, msg: Msg) -> None:
        if self.queue.full():
            self.overflow.set()
        else:
            self.queue.put_nowait(msg)


class EventHub:
    """Async context manager: the live subscription, the open streams, the revocation watch."""

    def __init__(self, bus: Bus, store: Store, *, max_per_token: int, max_streams: int) -> None:
        self._bus = bus
        self._store = store
        self.max_per_token = max_per_token
        self.max_streams = max_streams
        self._all: set[Subscriber] = set()
        self._by_machine: dict[str | None, set[Subscriber]] = {}
        self._per_token: Counter[str] = Counter()
        self._sub: JetStreamContext.PushSubscription | None = None

    async def __aenter__(self) -> EventHub:
        self._sub = await self._bus.js.subscribe(
            subjects.ALL_MACHINE_EVENTS, cb=self._fan_out, ordered_consumer=True,
            idle_heartbeat=LIVE_HEARTBEAT_S,
            deliver_policy=DeliverPolicy.NEW,
        )  # fmt: skip
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end_all()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()

    @property
    def open_streams(self) -> int:
        return len(self._all)

    def open(self, caller: Caller, machine_id: str | None, reach: Reach) -> Subscriber:
        """A new stream, receiving live events from now on, for as long as its caller holds
        ``reach``; RateLimited past a cap."""
        if len(self._all) >= self.max_streams:
            raise RateLimited("this gateway has too many open event streams",
                              data={"retryAfterS": FULL_RETRY_AFTER_S})  # fmt: skip
        # The operator (admin) is bounded by the gateway's cap only: `fleet machines create
        # --wait` for many machines, or a dashboard, follows many machines at once.
        if not caller.admin and self._per_token[caller.token_id] >= self.max_per_token:
            raise RateLimited(
                f"this token has {self.max_per_token} open event streams already",
                data={"retryAfterS": FULL_RETRY_AFTER_S},
            )
        sub = Subscriber(caller, machine_id, reach)
        self._all.add(sub)
        self._by_machine.setdefault(machine_id, set()).add(sub)
        self._per_token[caller.token_id] += 1
        return sub

    def close(self, sub: Subscriber) -> None:
        if sub not in self._all:
            return
        self._all.discard(sub)
        group = self._by_machine.get(sub.machine_id, set())
        group.discard(sub)
        if not group:
            self._by_machine.pop(sub.machine_id, None)
        self._per_token[sub.caller.token_id] -= 1
        if self._per_token[sub.caller.token_id] <= 0:
            del self._per_token[sub.caller.token_id]

    def end_all(self) -> None:
        for sub in self._all:
            sub.ended.set()

    async def _fan_out(self, msg: Msg) -> None:
        if not self._all or not honest(msg):  # nobody listening: nothing to decode
            return
        machine_id = msg.subject.rsplit(".", 1)[-1]
        for sub in self._by_machine.get(None, ()):
            sub.offer(msg)
        for sub in self._by_machine.get(machine_id, ()):
            sub.offer(msg)

    def end_all_unavailable(self) -> None:
        """The bus is gone: the live subscription may miss what is published meanwhile, so
        every stream ends with 1501, and its client resumes from the stream (stored events)
        after the last it read."""
        error = Unavailable("the gateway lost its event bus; resume after the last event read",
                            retry_after_ms=RETRY_AFTER_MS)  # fmt: skip
        ending = [s for s in self._all if not s.ended.is_set()]
        for sub in ending:
            sub.error = error
            sub.ended.set()
        if ending:
            log.warning("events.bus_lost", streams=len(ending))

    @property
    def bus_connected(self) -> bool:
        return bool(self._bus.nc.is_connected)

    def token_ids(self) -> set[str]:
        """The tokens behind open streams (the operator's is never revoked)."""
        return {s.caller.token_id for s in self._all} - {OPERATOR}

    def end_unreached(self, current: Mapping[str, Caller | None]
                      ) -> dict[str, tuple[int, str | None]]:  # fmt: skip
        """End the streams whose caller, as ``current`` has it now (by token id; None: it no
        longer stands), no longer holds their reach; how many each token held, and its user."""
        cut: dict[str, tuple[int, str | None]] = {}
        for sub in self._all:
            token_id = sub.caller.token_id
            if token_id not in current or sub.ended.is_set():
                continue
            now = current[token_id]
            if sub.reach.allows(now):
                continue
            log.info("events.stream_revoked", token_id=token_id, revoked=now is None)
            if now is not None:
                sub.error = Forbidden("this caller may no longer follow these events",
                                      data={"scope": sub.reach.scope,
                                            "instanceId": sub.reach.instance_id})  # fmt: skip
            sub.ended.set()
            count, _ = cut.get(token_id, (0, None))
            cut[token_id] = (count + 1, sub.caller.user_id)
        return cut


def honest(msg: Msg) -> bool:
    """A stored event that says only what its subject allows: its kind and its machine. A
    machine writes its own reports' payloads, and one naming another machine (or of another
    kind) is stored all the same (NATS checks the subject, not the payload): it is never shown
    to anyone, as the stages never believe it (``controlplane.events.consumer``)."""
    try:
        event = decode_event(msg.data)
    except msgspec.DecodeError:  # ValidationError included
        log.warning("events.undecodable_skipped", subject=msg.subject)
        return False
    if not matches_subject(event, msg.subject):
        log.warning("events.forged_skipped", subject=msg.subject, claimed=subject_of(event))
        return False
    return True
