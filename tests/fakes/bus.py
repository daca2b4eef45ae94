"""An in-memory broker with the ``Bus`` interface, in the manner of FastStream's TestBroker.

``FakeBus.publish`` stores the event (dropping a duplicate ``eventId``, as JetStream's duplicate
window does) and queues it for every attached durable subscription of its class. Nothing runs
until ``await bus.settle()``, which feeds the queue to the declared ``@subscriber`` handlers, one
at a time, with the rules of ``services.common.consumer.Consumer``:

- a handler that returns: acked;
- ``Permanent``: the subscription's give-up at once;
- ``Retry``: parked ("deferred") and redelivered later, as long as the event's age (its real age
  plus the time that passed on the broker's *virtual* clock) is under the subscription's retry
  budget; then given up with the consumer's reason (``advance`` moves that clock);
- any other exception: redelivered at once, up to ``settings.max_deliver`` attempts, then given up.

Time never really passes. ``settle`` redelivers deferred events while that changes something
(so "retry until the other stage caught up" works) and stops when a round only defers again; a
test that wants to see that a stage *waits* asserts on ``bus.deferred`` and on the store after
it, and one that wants the wait to run out calls ``advance``. Every delivery's outcome is
in ``bus.deliveries``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, Literal, TypeVar, cast

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts import subjects
from contracts.events import Event, decode_event, encode_event, kind_of, now
from contracts.subjects import EventKind
from services.common.bus import Bus
from services.common.consumer import Permanent, Retry, _reason
from services.common.settings import Settings
from services.common.subscriptions import Service, declared_subscriptions

E = TypeVar("E", bound=Event)
Outcome = Literal["ok", "deferred", "error", "gave_up"]


@dataclass(frozen=True)
class Subscriber:
    """One attached declaration: what ``subscriptions.consumers`` would have started."""

    durable: str
    event_type: type[Any]
    handler: Callable[[Any], Awaitable[None]]
    give_up: Callable[[Any, str], Awaitable[None]]
    retry_budget_s: float


@dataclass
class Delivery:
    """One attempt at handing one stored event to one subscriber."""

    subscriber: Subscriber
    data: bytes
    attempt: int = 1
    #: When (on the virtual clock) it may be delivered; > the clock: deferred.
    due_s: float = 0.0
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def durable(self) -> str:
        return self.subscriber.durable

    @property
    def event(self) -> Event:
        return decode_event(self.data)


class NotSettled(AssertionError):
    """``settle`` ran out of rounds: something keeps publishing or retrying."""


class FakeBus(Bus):
    """The bus a stage or the gateway is given in tests/fast; ``nc`` is a ``FakeNats``."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings or Settings(), name="fake")
        self.settings = settings or Settings()
        self.fake_nc = FakeNats()
        #: Every event stored, in order (duplicates dropped, as JetStream does).
        self.events: list[Event] = []
        #: How many publishes were dropped as duplicates of a stored eventId.
        self.duplicates = 0
        #: Every delivery made so far, with its outcome.
        self.deliveries: list[Delivery] = []
        self.clock_s = 0.0
        self._stored: list[bytes] = []
        self._ids: set[str] = set()
        self._subscribers: list[Subscriber] = []
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

    def fail_publish(self, event_type: type[Event], times: int = 1) -> None:
        """The next ``times`` publishes of ``event_type`` raise, as a publish that NATS never
        acknowledged does (the handler crashes after its side effects)."""
        self._failing[event_type] = times

    async def publish(self, event: Event) -> None:
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
                self._queue.append(Delivery(sub, data, due_s=self.clock_s))

    async def publish_many(self, events: Iterable[Event]) -> None:
        for event in events:
            await self.publish(event)

    # --- subscribers ---------------------------------------------------------------------------
    def attach(self, service: Service) -> None:
        """Subscribe every ``@subscriber`` of ``service``, as ``enter_subscriptions`` would; like
        a new durable consumer (deliver policy ALL) it also gets the events stored already."""
        for name, declared in declared_subscriptions(type(service)):
            give_up = service.give_up
            if declared.give_up is not None:
                give_up = MethodType(declared.give_up, service)
            budget = declared.retry_budget
            sub = Subscriber(
                durable=str(declared.durable),
                event_type=declared.event_type,
                handler=getattr(service, name),
                give_up=give_up,
                retry_budget_s=(
                    budget(self.settings) if budget is not None else self.settings.ack_wait_s * 5
                ),
            )
            if any(s.durable == sub.durable for s in self._subscribers):
                raise ValueError(f"durable {sub.durable} is attached twice")
            self._subscribers.append(sub)
            for data in self._stored:
                if isinstance(decode_event(data), sub.event_type):
                    self._queue.append(Delivery(sub, data, due_s=self.clock_s))

    async def redeliver(self, event: Event, durable: str | None = None) -> None:
        """Queue a stored event again (JetStream's redelivery after a crash or an ack timeout)
        for its subscribers, or only for ``durable``."""
        data = next(d for d in self._stored if decode_event(d).event_id == event.event_id)
        for sub in self._subscribers:
            if isinstance(event, sub.event_type) and durable in (None, sub.durable):
                attempt = 1 + sum(
                    1
                    for d in self.deliveries
                    if d.subscriber is sub and d.event.event_id == event.event_id
                )
                self._queue.append(Delivery(sub, data, attempt=attempt, due_s=self.clock_s))

    async def settle(self, *, deferred: bool = True, max_rounds: int = 1_000) -> None:
        """Deliver until quiet: every queued delivery, then the deferred ones again (the
        virtual clock moved on by their delay) for as long as a round changes something: a
        delivery that was not deferred again, or a new event. With ``deferred=False`` the
        deferred ones are left in ``self.deferred``."""
        for _ in range(max_rounds):
            events, start = len(self.events), len(self.deliveries)
            while self._queue:
                await self._deliver(self._queue.popleft())
            if not self._parked or not deferred:
                return
            round_ = self.deliveries[start:]
            if (
                round_
                and len(self.events) == events
                and all(d.outcome == "deferred" for d in round_)
            ):
                return  # the last round only deferred again: nothing will change by itself
            self.clock_s = max([self.clock_s, *(d.due_s for d in self._parked)])
            self._queue.extend(self._parked)
            self._parked.clear()
        raise NotSettled(f"still busy after {max_rounds} rounds: {self.pending}")

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the virtual clock, then settle: deferred deliveries run
        again, and give up once their event is older than their retry budget."""
        self.clock_s += seconds
        self._queue.extend(self._parked)
        self._parked.clear()
        await self.settle()

    @property
    def deferred(self) -> list[Delivery]:
        """Deliveries a handler deferred (``Retry``) that have not run again yet."""
        return list(self._parked)

    @property
    def pending(self) -> list[Delivery]:
        return [*self._queue, *self._parked]

    async def _deliver(self, d: Delivery) -> None:
        sub, event = d.subscriber, d.event
        self.deliveries.append(d)
        try:
            await sub.handler(event)
        except Permanent as exc:
            await self._give_up(d, event, str(exc))
        except Retry as exc:
            age_s = (now() - event.occurred_at).total_seconds() + self.clock_s
            if age_s < sub.retry_budget_s:
                d.outcome, d.reason = "deferred", str(exc)
                self._parked.append(
                    Delivery(sub, d.data, attempt=d.attempt, due_s=self.clock_s + exc.delay_s)
                )
            else:
                await self._give_up(d, event, f"gave up waiting after {age_s:.0f}s: {exc}")
        except Exception as exc:  # noqa: BLE001 - as the consumer: a handler bug is a retry
            if d.attempt >= self.settings.max_deliver:
                await self._give_up(d, event, _reason(exc))
            else:
                d.outcome, d.reason = "error", _reason(exc)
                self._queue.append(Delivery(sub, d.data, attempt=d.attempt + 1, due_s=d.due_s))
        else:
            d.outcome = "ok"

    async def _give_up(self, d: Delivery, event: Event, reason: str) -> None:
        await d.subscriber.give_up(event, reason)
        d.outcome, d.reason = "gave_up", reason

    # --- reading what happened -------------------------------------------------------------
    def of(self, event_type: type[E], machine_id: str | None = None) -> list[E]:
        """The stored events of one class (and one machine), oldest first."""
        return [
            e
            for e in self.events
            if isinstance(e, event_type) and machine_id in (None, e.machine_id)
        ]

    def one(self, event_type: type[E], machine_id: str | None = None) -> E:
        found = self.of(event_type, machine_id)
        assert len(found) == 1, f"expected one {event_type.__name__}, got {found}"
        return found[0]

    def kinds(self, machine_id: str | None = None) -> list[EventKind]:
        """The kinds of the stored events (of one machine), in order."""
        return [kind_of(e) for e in self.events if machine_id in (None, e.machine_id)]

    def outcomes(self, durable: str) -> list[Outcome | None]:
        return [d.outcome for d in self.deliveries if d.durable == durable]


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


@dataclass
class FakeNats:
    """The calls ``services.common.revoke`` (and a heartbeat subscription) make on a NATS
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
            if _matches(sub.subject, subject):
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
        raise AssertionError(f"FakeNats has nothing that answers {subject}")

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


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)
