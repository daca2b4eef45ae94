"""The fan-out: every machine event, from the stream's durable consumer ``webhooks``, queued for
each endpoint it goes to (its instance's and the platform's that want its type).

Not the stages' ``controlplane.events.consumer.Consumer``: that one runs a kind's events at once,
each
on its own, and a webhook needs a machine's events of every kind in their order. So one
process at a time (the holder of a lock in Redis, renewed while it fetches; a replica that
stops or dies gives it up to another) fetches the consumer's events and queues them in stream
order, and acks each once it is queued. A queue orders by stream sequence, and an event handed
over again (its ack lost in a crash) is not queued twice. When queuing fails (the store is
gone), the rest of the batch is handed back at once (``nak``, redelivered before any newer
event) and the fetch waits the one backoff rule's time.

The consumer starts at the events new when it is first made: an endpoint gets what happens
after it exists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from base.backoff import backoff_s
from base.tasks import cancel_and_join
from contracts.bus import subjects
from contracts.bus.consumers import Durable
from contracts.bus.events import MachineCreated, decode_machine_event, kind_of, matches_subject
from contracts.gateway import webhook_signature
from contracts.gateway.webhooks import MACHINE_TYPE_PREFIX, wants
from controlplane.bus import Bus, bind_pull
from controlplane.settings import Settings
from controlplane.store import QueueBound, Store, Target, parse_member
from services.webhooks.deliver import Deliveries

log = structlog.get_logger(__name__)

LOCK = "webhooks-fanout"
BATCH = 256
#: Machines whose instance is remembered (a machine's instance never changes).
INSTANCES_KEPT = 100_000
_TIME = msgspec.json.Encoder()


class QueueFailed(Exception):
    """An event could not be queued; the batch's rest was handed back."""


@dataclass
class Batch:
    """One fetch's events: whether the endpoints kept were found current for it already."""

    checked: bool = False


class Fanout:
    """Async context manager: contends for the lock and, while holding it, queues the events."""

    def __init__(self, store: Store, bus: Bus, settings: Settings, deliveries: Deliveries) -> None:
        self._store = store
        self._records = store.webhooks
        self._bus = bus
        self._settings = settings
        self._deliveries = deliveries
        self._token = store.locks.token()
        #: The lock outlives a few ack waits: when a holder dies, its unacked events are due
        #: again (redelivered first) before another process takes over.
        self._lock_ttl_s = 3 * settings.ack_wait_s
        self._renew_s = settings.ack_wait_s
        self._instances: dict[str, str | None] = {}
        #: The endpoints events of each instance (None: of no instance) go to, as looked up at
        #: ``_version``: kept while the version stays (``store.webhooks.enqueue`` checks it).
        self._targets: dict[str | None, list[Target]] = {}
        self._version: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._bound = QueueBound.of(settings)

    async def __aenter__(self) -> Fanout:
        self._task = asyncio.create_task(self._contend(), name="webhooks-fanout")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_join(self._task)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=Durable.WEBHOOKS.value, deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self._settings.ack_wait_s, max_deliver=-1,
            max_ack_pending=4 * BATCH, filter_subject=subjects.ALL_MACHINE_EVENTS,
        )  # fmt: skip

    async def _contend(self) -> None:
        locks = self._store.locks
        while True:
            try:
                held = await locks.take(LOCK, self._token, self._lock_ttl_s)
            except Exception as exc:  # noqa: BLE001 - task boundary: the store comes back
                log.warning("webhooks.lock_failed", error=repr(exc))
                held = False
            if held:
                try:
                    await self._lead()
                except Exception as exc:  # noqa: BLE001 - task boundary: contend again
                    log.warning("webhooks.fanout_failed", error=repr(exc))
                finally:
                    await asyncio.shield(self._release())
            await asyncio.sleep(self._renew_s)

    async def _release(self) -> None:
        try:
            await self._store.locks.release(LOCK, self._token)
        except Exception as exc:  # noqa: BLE001 - its TTL frees it
            log.warning("webhooks.unlock_failed", error=repr(exc))

    async def _lead(self) -> None:
        """Fetch and queue, for as long as the lock stays ours."""
        sub = await bind_pull(self._bus.js, self.config())
        log.info("webhooks.fanout_leading")
        renew_at = time.monotonic() + self._renew_s
        try:
            while True:
                if time.monotonic() >= renew_at:
                    if not await self._store.locks.renew(LOCK, self._token, self._lock_ttl_s):
                        log.warning("webhooks.fanout_lost_lock")
                        return
                    renew_at = time.monotonic() + self._renew_s
                await self._fetch(sub)
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("webhooks.unsubscribe_failed", error=str(exc))

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> None:
        try:
            msgs = await sub.fetch(batch=BATCH, timeout=min(1.0, self._renew_s))
        except TimeoutError:
            return
        except Exception as exc:  # noqa: BLE001 - task boundary: a fetch fails, the next retries
            log.warning("webhooks.fetch_failed", error=repr(exc))
            await asyncio.sleep(0.5)
            return
        try:
            await self.take(msgs)
            self._failures = 0
        except QueueFailed:
            self._failures += 1
            await asyncio.sleep(backoff_s(self._failures, cap=10.0))

    async def take(self, msgs: Iterable[Msg]) -> None:
        """Queue each event in order and ack it; QueueFailed (the rest handed back) if one
        could not be queued."""
        batch = Batch()
        pending = list(msgs)
        for i, msg in enumerate(pending):
            try:
                await self.queue(msg.data, msg.subject, msg.metadata.sequence.stream, batch)
            except Exception as exc:
                log.warning("webhooks.queue_failed", subject=msg.subject, error=repr(exc))
                for rest in pending[i:]:
                    await rest.nak()
                raise QueueFailed from exc
            await msg.ack()

    async def queue(self, data: bytes, subject: str, seq: int, batch: Batch | None = None) -> None:
        """Queue one stored event for the endpoints it goes to. The endpoints kept are checked
        still to be current once per ``batch`` (by the first event's queuing, or a look at the
        version), and looked up again when they are not."""
        try:
            event = decode_machine_event(data)
        except msgspec.DecodeError as exc:
            log.warning("webhooks.undecodable_skipped", subject=subject, error=str(exc))
            return
        if not matches_subject(event, subject):  # a machine wrote another machine's name
            log.warning("webhooks.forged_skipped", subject=subject)
            return
        batch = batch or Batch()
        instance = await self._instance_of(event.machine_id, event)
        type_ = MACHINE_TYPE_PREFIX + kind_of(event).value
        stamp = _TIME.encode(event.occurred_at)[1:-1].decode()
        body = webhook_signature.body(type_, stamp, data)
        for _ in range(3):  # the endpoints may change between a look-up and the queuing
            targets = [t for t in await self._targets_of(instance)
                       if not t.disabled and wants(t.events, type_)]  # fmt: skip
            if not targets:
                if batch.checked or await self._records.version() == self._version:
                    batch.checked = True
                    return
                self._forget()
                continue
            claims = self._deliveries.claimable(t.scope for t in targets)
            heads = await self._records.enqueue(
                [(t.id, claim) for t, claim in zip(targets, claims, strict=True)],
                queue=event.machine_id, seq=seq, event_id=event.event_id, body=body,
                now_ms=int(time.time() * 1000), token=self._deliveries.token,
                lease_ms=self._deliveries.lease_ms, bound=self._bound,
                version="" if batch.checked else self._version or "",
            )  # fmt: skip
            if heads is not None:
                batch.checked = True
                scopes = {t.id: t.scope for t in targets}
                self._deliveries.start({m: scopes[parse_member(m)[0]] for m in heads}, heads)
                return
            self._forget()
        raise QueueFailed(f"the webhooks kept changing while {event.event_id} was queued")

    async def _targets_of(self, instance: str | None) -> list[Target]:
        if instance not in self._targets:
            version, found = await self._records.targets(instance)
            if version != self._version:  # the others kept are of an older version
                self._forget()
                self._version = version
            self._targets[instance] = found
        return self._targets[instance]

    def _forget(self) -> None:
        self._targets.clear()
        self._version = None

    async def _instance_of(self, machine_id: str, event: object) -> str | None:
        if machine_id in self._instances:
            return self._instances[machine_id]
        instance = await self._records.instance_of(machine_id)
        if instance is None and isinstance(event, MachineCreated):
            instance = event.instance_id
        # Kept even when none: a machine's record is written before its first event, so one
        # with no record now never had one (its events go to the platform's endpoints only).
        if len(self._instances) >= INSTANCES_KEPT:
            self._instances.clear()
        self._instances[machine_id] = instance
        return instance
