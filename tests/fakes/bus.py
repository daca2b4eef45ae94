"""An in-memory broker with the ``Bus`` interface, in the manner of FastStream's TestBroker.

``FakeBus`` stands in for NATS and JetStream only. ``publish`` stores the event (dropping a
duplicate ``eventId``, as the stream's duplicate window does) and queues it for every attached
durable; ``await bus.settle()`` then hands each queued message to the stage's *real*
``controlplane.events.consumer.Consumer`` (built by ``subscriptions.consumers``, as a service's
``__main__`` builds them), one at a time. So the retry, ``Retry``, ``Permanent`` and give-up
rules under test are the production ones; the fake only plays the server's part of them:

- ack and term: done with the message;
- nak (a ``Retry``, or a failed attempt with backoff): the message is redelivered, with
  ``num_delivered`` one higher, on the next round (no time passes; the delay is not waited).

``settle`` runs rounds until quiet: a round delivers everything queued, then the naked
messages again, for as long as a round changes something (a delivery that was not deferred
again, or a new event). It stops when a round only deferred again, leaving those in
``bus.deferred``, so a test sees that a stage *waits* by asserting on that and on the store,
never by sleeping. A retry budget that runs out is a test publishing an old event (its
``occurredAt`` in the past). Every delivery and its outcome (the consumer's metric label:
``ok``, ``deferred``, ``error``, ``gave_up``, ``poison``) is in ``bus.deliveries``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.bus import subjects
from contracts.bus.events import AnyEvent, Event, decode_event, encode_event, kind_of, subject_of
from contracts.bus.subjects import EventKind
from controlplane.bus import Bus
from controlplane.events.consumer import Consumer
from controlplane.events.subscriptions import Handlers, consumers, declared_subscriptions
from controlplane.process.metrics import Metrics
from controlplane.settings import Settings

E = TypeVar("E", bound=AnyEvent)


class _Outcomes(Metrics):
    """The consumer reports each delivery's outcome as a metric: that is where we read it."""

    last: str | None = None

    def event_handled(self, stage: str, outcome: str, seconds: float | None = None) -> None:
        self.last = outcome


@dataclass(frozen=True)
class Subscriber:
    durable: str
    event_type: type[Any]
    consumer: Consumer[Any]


@dataclass
class Delivery:
    """One attempt at handing one stored event to one durable."""

    subscriber: Subscriber
    data: bytes
    #: JetStream's ``num_delivered``: 1 the first time, one more on each redelivery.
    attempt: int = 1
    #: The event's stream sequence (its position in the stream, from 1).
    seq: int = 0
    #: The consumer's verdict (its metric label), once it ran.
    outcome: str | None = None
    #: What the consumer answered the server: ack, nak, term (None: nothing, yet).
    answer: str | None = None
    nak_delay_s: float | None = None

    @property
    def durable(self) -> str:
        return self.subscriber.durable

    @property
    def event(self) -> AnyEvent:
        return decode_event(self.data)


@dataclass(frozen=True)
class _Sequence:
    stream: int


@dataclass(frozen=True)
class _Metadata:
    num_delivered: int
    sequence: _Sequence


class _JsMsg:
    """The parts of a JetStream message the consumer uses."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.data = delivery.data
        self.subject = subject_of(delivery.event)
        self.metadata = _Metadata(delivery.attempt, _Sequence(delivery.seq))

    async def ack(self) -> None:
        self.delivery.answer = "ack"

    async def nak(self, delay: float | None = None) -> None:
        self.delivery.answer, self.delivery.nak_delay_s = "nak", delay

    async def term(self) -> None:
        self.delivery.answer = "term"

    async def in_progress(self) -> None:
        return None


class NotSettled(AssertionError):
    """``settle`` ran out of rounds: something keeps publishing or retrying."""


class FakeBus(Bus):
    """The bus a stage or the gateway is given in tests/fast; ``nc`` is a ``FakeNats``."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings or Settings(), name="fake")
        self.settings = settings or Settings()
        self.fake_nc = FakeNats()
        #: Every event stored, in order (duplicates dropped, as JetStream does).
        self.events: list[AnyEvent] = []
        #: How many publishes were dropped as duplicates of a stored eventId.
        self.duplicates = 0
        #: Every delivery made so far, with its outcome.
        self.deliveries: list[Delivery] = []
        self._stored: list[bytes] = []
        self._ids: set[str] = set()
        self._subscribers: list[Subscriber] = []
        self._outcomes = _Outcomes()
        self._queue: deque[Delivery] = deque()
        self._parked: list[Delivery] = []
        self._failing: dict[type[Any], int] = {}

    # --- the Bus interface -----------------------------------------------------------------
    @property
    def nc(self) -> NATS:
        return cast(NATS, self.fake_nc)

    @property
    def js(self) -> JetStreamContext:
        raise AssertionError("tests/fast has no JetStream: publish through the bus")

    async def __aenter__(self) -> FakeBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def fail_publish(self, event_type: type[AnyEvent], times: int = 1) -> None:
        """The next ``times`` publishes of ``event_type`` raise, as a publish that NATS never
        acknowledged does (the handler crashes after its side effects)."""
        self._failing[event_type] = times

    async def publish(self, event: AnyEvent) -> None:
        if self._failing.get(type(event), 0) > 0:
            self._failing[type(event)] -= 1
            raise TimeoutError(f"fake: publishing {type(event).__name__} failed")
        if event.event_id in self._ids:
            self.duplicates += 1
            return
        data = encode_event(event)  # what cannot be encoded fails here, as it would on the wire
        self._ids.add(event.event_id)
        self._stored.append(data)
        self.events.append(decode_event(data))
        for sub in self._subscribers:
            if isinstance(self.events[-1], sub.event_type):
                self._queue.append(Delivery(sub, data, seq=len(self._stored)))

    async def publish_many(self, events: Iterable[AnyEvent]) -> None:
        for event in events:
            await self.publish(event)

    # --- subscribers ---------------------------------------------------------------------------
    def attach(self, service: Handlers) -> None:
        """Start the real consumers of every ``@subscriber`` of ``service`` on this bus, as
        ``enter_subscriptions`` does; like a new durable (deliver policy ALL) each also gets
        the events stored already."""
        built = consumers(service, self, self.settings, self._outcomes)
        declared = declared_subscriptions(type(service))
        for consumer, (_, d) in zip(built, declared, strict=True):
            sub = Subscriber(str(d.durable), d.event_type, consumer)
            if any(s.durable == sub.durable for s in self._subscribers):
                raise ValueError(f"durable {sub.durable} is attached twice")
            self._subscribers.append(sub)
            for seq, data in enumerate(self._stored, start=1):
                if isinstance(decode_event(data), sub.event_type):
                    self._queue.append(Delivery(sub, data, seq=seq))

    async def redeliver(self, event: AnyEvent, durable: str | None = None) -> None:
        """Queue a stored event again (JetStream's redelivery after a crash or an ack timeout)
        for its durables, or only for ``durable``."""
        seq, data = next(
            (i, d)
            for i, d in enumerate(self._stored, start=1)
            if decode_event(d).event_id == event.event_id
        )
        for sub in self._subscribers:
            if isinstance(event, sub.event_type) and durable in (None, sub.durable):
                attempt = 1 + sum(
                    1
                    for d in self.deliveries
                    if d.subscriber is sub and d.event.event_id == event.event_id
                )
                self._queue.append(Delivery(sub, data, attempt=attempt, seq=seq))

    async def settle(self, *, max_rounds: int = 1_000) -> None:
        """Deliver until quiet (see the module's docstring); what only waits stays in
        ``self.deferred``."""
        for _ in range(max_rounds):
            events, start = len(self.events), len(self.deliveries)
            while self._queue:
                await self._deliver(self._queue.popleft())
            if not self._parked:
                return
            round_ = self.deliveries[start:]
            if (
                round_
                and len(self.events) == events
                and all(d.outcome == "deferred" for d in round_)
            ):
                return  # the last round only deferred again: nothing will change by itself
            self._queue.extend(self._parked)
            self._parked.clear()
        raise NotSettled(f"still busy after {max_rounds} rounds: {self.pending}")

    @property
    def deferred(self) -> list[Delivery]:
        """Naked deliveries not yet redelivered (the redeliveries to come)."""
        return list(self._parked)

    @property
    def pending(self) -> list[Delivery]:
        return [*self._queue, *self._parked]

    async def _deliver(self, d: Delivery) -> None:
        self.deliveries.append(d)
        self._outcomes.last = None
        # The consumer's own per-message path: decode, class check, handler, ack/nak/term.
        await d.subscriber.consumer._process(cast(Msg, _JsMsg(d)))
        d.outcome = self._outcomes.last
        if d.answer == "nak":
            self._parked.append(Delivery(d.subscriber, d.data, attempt=d.attempt + 1, seq=d.seq))
        elif d.answer is None:
            raise AssertionError(f"{d.durable} neither acked, naked nor termed {d.event}")

    def outcomes(self, durable: str) -> list[str | None]:
        return [d.outcome for d in self.deliveries if d.durable == durable]

    # --- reading what happened -------------------------------------------------------------
    def of(self, event_type: type[E], machine_id: str | None = None) -> list[E]:
        """The stored events of one class (and one machine), oldest first."""
        return [
            e
            for e in self.events
            if isinstance(e, event_type) and machine_id in (None, getattr(e, "machine_id", None))
        ]

    def one(self, event_type: type[E], machine_id: str | None = None) -> E:
        found = self.of(event_type, machine_id)
        assert len(found) == 1, f"expected one {event_type.__name__}, got {found}"
        return found[0]

    def kinds(self, machine_id: str | None = None) -> list[EventKind]:
        """The kinds of the stored events (of one machine), in order."""
        machine_events = [e for e in self.events if isinstance(e, Event)]
        return [kind_of(e) for e in machine_events if machine_id in (None, e.machine_id)]


# --- NATS, as far as revocation uses it ------------------------------------------------------
@dataclass(frozen=True)
class FakeMsg:
    subject: str
    data: bytes = b""
    headers: dict[str, str] | None = None
    reply: str = ""


MsgCallback = Callable[[FakeMsg], Awaitable[None]]


@dataclass
class FakeSubscription:
    nc: FakeNats
    subject: str
    queue: str
    cb: MsgCallback

    async def unsubscribe(self) -> None:
        if self in self.nc.subscriptions:
            self.nc.subscriptions.remove(self)

    async def drain(self) -> None:  # each message was handed on as it was published
        await self.unsubscribe()


@dataclass
class FakeNats:
    """The calls ``controlplane.machines.revoke`` (and a heartbeat subscription) make on a NATS
    client, answered by one pretend server, ``server_id``, whose connections are in
    ``connections`` (machine id -> client ids). ``kicked`` records what was closed."""

    server_id: str = "FAKESERVER"
    connections: dict[str, list[int]] = field(default_factory=dict)
    kicked: list[tuple[str, int]] = field(default_factory=list)
    subscriptions: list[FakeSubscription] = field(default_factory=list)
    published: list[FakeMsg] = field(default_factory=list)
    is_closed: bool = False
    max_payload: int = 1024 * 1024
    _inboxes: int = 0

    def connect_machine(self, machine_id: str, cid: int) -> None:
        self.connections.setdefault(machine_id, []).append(cid)

    def new_inbox(self) -> str:
        self._inboxes += 1
        return f"_INBOX.fake.{self._inboxes}"

    async def subscribe(self, subject: str, queue: str = "", cb: MsgCallback | None = None,
                        **_: Any) -> FakeSubscription:  # fmt: skip
        assert cb is not None, "FakeNats supports callback subscriptions only"
        sub = FakeSubscription(self, subject, queue, cb)
        self.subscriptions.append(sub)
        return sub

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:  # fmt: skip
        msg = FakeMsg(subject, payload, headers, reply)
        self.published.append(msg)
        if subject == subjects.ACCOUNT_CONNZ:
            await self._answer_connz(msg)
            return
        for sub in list(self.subscriptions):
            if subject_matches(sub.subject, subject):
                await sub.cb(msg)

    async def request(self, subject: str, payload: bytes = b"", timeout: float = 1.0,
                      headers: dict[str, str] | None = None) -> FakeMsg:  # fmt: skip
        if subject == subjects.server_kick(self.server_id):
            cid = int(json.loads(payload)["cid"])
            for machine_id, cids in self.connections.items():
                if cid in cids:
                    cids.remove(cid)
                    self.kicked.append((machine_id, cid))
                    return FakeMsg(subject, b'{"data": {}}')
            return FakeMsg(subject, b'{"error": {"code": 404, "description": "not found"}}')
        responders = [s for s in self.subscriptions if subject_matches(s.subject, subject)]
        if not responders:
            raise AssertionError(f"FakeNats has nothing that answers {subject}")
        return await self._asked(responders[0], FakeMsg(subject, payload, headers), timeout)

    async def _asked(self, responder: FakeSubscription, msg: FakeMsg, timeout: float) -> FakeMsg:
        """``msg`` asked of a test's subscription (a pretend service), its first reply."""
        answered: asyncio.Future[FakeMsg] = asyncio.get_running_loop().create_future()

        async def keep(reply: FakeMsg) -> None:
            if not answered.done():
                answered.set_result(reply)

        inbox = await self.subscribe(self.new_inbox(), cb=keep)
        try:
            await responder.cb(FakeMsg(msg.subject, msg.data, msg.headers, inbox.subject))
            return await asyncio.wait_for(answered, timeout)
        finally:
            await inbox.unsubscribe()

    async def flush(self, timeout: float = 1.0) -> None:
        return None

    async def _answer_connz(self, query: FakeMsg) -> None:
        user = json.loads(query.data)["user"]
        answer = {
            "server": {"id": self.server_id},
            "data": {"connections": [{"cid": c, "authorized_user": user}
                                     for c in self.connections.get(user, [])]},
        }  # fmt: skip
        await self.publish(query.reply, json.dumps(answer).encode())
        # A real gather waits a quiet period for more servers; a 503 (no more responders)
        # ends it at once, so no test waits for that.
        await self.publish(query.reply, b"", headers={"Status": "503"})


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether NATS delivers ``subject`` to a subscription or filter ``pattern`` (``*``, ``>``)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)
