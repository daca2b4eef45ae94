"""A durable JetStream consumer that feeds events to a handler, at least once.

Each stage reacts to one event class (so one kind, ``machine.<kind>.*``) through one of these.
The rules:
- explicit ack after the handler returns; while it runs, ``in_progress`` keeps the ack wait open
  (a short ack wait, so a killed process's events are redelivered within seconds);
- a handler that raises is retried (nak with a growing delay) up to ``max_attempts``; then
  ``give_up`` records the failure (``machine.failed``) and the event is terminated, so a poison
  event never blocks the ones behind it;
- a ``Permanent`` error gives up at once; an undecodable event, one of another class than the
  consumer's, or one whose kind or machine id differs from its subject's (a forgery: see
  ``contracts.bus.events.matches_subject``) is logged once and terminated;
- on exit, fetching stops and in-flight handlers get ``drain_s`` to finish; whatever is still
  unacked is redelivered to another replica (or to this one when it comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from base.backoff import backoff_s
from base.tasks import OwnedTasks, cancel_and_join
from contracts.bus import subjects
from contracts.bus.events import (
    AnyEvent,
    decode_event,
    kind_of_class,
    matches_subject,
    now,
    scope_of,
    subject_of,
)
from controlplane.bus import Bus, bind_pull
from controlplane.events.consumer_room import ROOM_POLL_S, Room, RoomGate, give_back
from controlplane.process.metrics import Metrics
from controlplane.settings import Settings

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=AnyEvent)
Handler = Callable[[E], Awaitable[None]]
GiveUp = Callable[[E, str], Awaitable[None]]

#: How long an event that came too early (``Retry``) is deferred by default. Not tied to the
#: ack wait: that one is short (fast recovery), while another stage may lag for minutes.
DEFAULT_RETRY_BUDGET_S = 150.0
#: Progress acks per ack wait while a handler runs: four, so that a starved event loop (two
#: busy cores) may miss three in a row before JetStream hands the event to someone else.
KEEPALIVES_PER_ACK_WAIT = 4
#: Once the consumer is full, it fetches again when 1/8 of its handler slots are free.
FETCH_REFILL_DIVISOR = 8


class Permanent(Exception):
    """Raised by a handler when retrying cannot help; the message is the reason for the user."""


class Retry(Exception):
    """Raised by a handler when the event came too early (another stage has not caught up):
    redelivered after ``delay_s`` without counting as a failed attempt, for as long as the
    event is younger than ``budget_s`` (default: the consumer's ``retry_budget_s``: a wait
    that bounds itself by what it waits for passes a larger one)."""

    def __init__(self, reason: str, delay_s: float = 0.5, budget_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.budget_s = budget_s


class Consumer(Generic[E]):
    def __init__(
        self,
        bus: Bus,
        *,
        durable: str,
        event_type: type[E],
        handler: Handler[E],
        give_up: GiveUp[E],
        concurrency: int = 64,
        ack_wait_s: float = 4.0,
        max_attempts: int = 5,
        drain_s: float = 20.0,
        retry_budget_s: float | None = None,
        metrics: Metrics | None = None,
        room: Room | None = None,
        stage: str | None = None,
    ) -> None:
        self._bus = bus
        #: None: no capacity gate (every stage but a host's machine.created).
        self._gate = RoomGate(room, str(durable)) if room is not None else None
        # Without one (tests, tools) the counts go to a registry nobody scrapes.
        self._metrics = metrics or Metrics()
        self._durable = str(durable)  # a Durable's plain value, for logs
        #: The metrics' stage label: the durable's role (one host's durable is labelled
        #: as the kind of work it does, not by host).
        self._stage = str(stage or durable)
        self._metrics.declare_stage(self._stage)  # its outcome series start at 0
        self._event_type = event_type
        self._kind = kind_of_class(event_type)
        self._handler = handler
        self._give_up = give_up
        self._concurrency = max(1, concurrency)
        self._ack_wait_s = ack_wait_s
        self._max_attempts = max(1, max_attempts)
        self._retry_budget_s = DEFAULT_RETRY_BUDGET_S if retry_budget_s is None else retry_budget_s
        #: Handlers under way; a stop lets them finish for drain_s, then cancels them (unacked:
        #: JetStream redelivers them).
        self._inflight = OwnedTasks(f"consumer:{durable}", drain_s=drain_s,
                                    failed_event="consumer.task_failed")  # fmt: skip
        #: In-flight handler -> the machine of its event (what the room gate counts as held).
        self._held: dict[asyncio.Task[None], str] = {}
        self._refill = max(1, self._concurrency // FETCH_REFILL_DIVISOR)
        #: Stream sequence -> how often this process deferred it (Retry); see _process.
        self._deferrals: dict[int, int] = {}
        self._slot_free = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sub: JetStreamContext.PullSubscription | None = None

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self._durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            # No server-side cap: the server would drop the event silently. Our code bounds
            # attempts and records the failure (machine.failed) instead.
            max_deliver=-1,
            max_ack_pending=self._concurrency * 4,
            filter_subject=subjects.event_filter(self._kind),
        )

    async def __aenter__(self) -> Consumer[E]:
        # A cluster still electing its leaders at a start answers nothing for a while.
        self._sub = await bind_pull(self._bus.js, self.config())
        self._loop_task = asyncio.create_task(self._fetch_loop(), name=f"fetch:{self._durable}")
        log.info("consumer.started", durable=self._durable, kind=self._kind.value)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop fetching, let in-flight handlers finish. Safe to call twice."""
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        self._stopping = True  # ends the loop even if nats-py's fetch swallows the cancel
        await cancel_and_join(task)
        if self._inflight:
            log.info("consumer.draining", durable=self._durable, inflight=len(self._inflight))
        await self._inflight.close()
        try:  # the drained handlers' acks must reach the server before we report "stopped"
            await self._bus.nc.flush(timeout=5)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("consumer.flush_failed", durable=self._durable, error=repr(exc))
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("consumer.unsubscribe_failed", error=str(exc))
        log.info("consumer.stopped", durable=self._durable)

    async def _fetch_loop(self) -> None:
        assert self._sub is not None
        while not self._stopping:
            free = self._concurrency - len(self._inflight)
            # Under load, wait for a few free slots rather than send a pull request for every
            # single one: each fetch is a round trip to the server.
            if free < min(self._refill, self._concurrency) and self._inflight:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            batch = await self._room_for(free)
            if batch <= 0:
                continue
            try:
                msgs = await self._sub.fetch(batch=batch, timeout=1.0)
            except TimeoutError:  # nothing to do (nats-py raises both kinds of TimeoutError)
                continue
            except Exception as exc:  # noqa: BLE001 - task boundary: the loop must outlive any fetch failure
                log.warning("consumer.fetch_failed", durable=self._durable, error=repr(exc))
                await asyncio.sleep(0.5)
                await self._recreate()
                continue
            if self._gate is not None:  # the room may have shrunk while the fetch waited
                keep = await self._gate.batch(batch, self._held_ids())
                msgs = await give_back(msgs, keep, self._deferrals)
            for msg in msgs:
                task = self._inflight.spawn(self._process(msg))
                if self._gate is not None:
                    self._held[task] = subjects.machine_of(msg.subject)
                task.add_done_callback(self._done)

    async def _room_for(self, free: int) -> int:
        """How many to fetch: ``free``, or what the room gate allows; when that is none, wait
        (fetching nothing, so that another host's provisioner gets the events) and say 0."""
        if self._gate is None:
            return free
        batch = await self._gate.batch(free, self._held_ids())
        if batch <= 0:
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_free.wait(), ROOM_POLL_S)
        return batch

    def _held_ids(self) -> frozenset[str]:
        return frozenset(self._held.values())

    async def _recreate(self) -> None:
        """After a failed fetch: make sure the durable consumer still exists (a cluster that
        lost it, a stream re-created by an operator); the pull subscription's inbox itself is
        restored by the connection on reconnect, on whichever node it reaches."""
        try:
            await self._bus.js.add_consumer(subjects.STREAM_NAME, config=self.config())
        except Exception as exc:  # noqa: BLE001 - task boundary: the next fetch retries
            log.debug("consumer.recreate_failed", durable=self._durable, error=repr(exc))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)
        self._slot_free.set()

    async def _process(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        # JetStream counts every delivery, a deferral (Retry) included; only failed attempts
        # count toward giving up. Deferrals are remembered here: after a move to another
        # replica they count as attempts again, the cautious side.
        attempt = msg.metadata.num_delivered - self._deferrals.get(seq, 0)
        try:
            event = decode_event(msg.data)
        except msgspec.DecodeError as exc:
            log.error(
                "consumer.poison_event", durable=self._durable, subject=msg.subject, error=str(exc)
            )
            await msg.term()
            self._metrics.event_handled(self._stage, "poison")
            return
        if not matches_subject(event, msg.subject):
            # A machine may publish only on its own status subject, but writes the payload
            # itself: one that names another machine (or is of another kind) is a forgery.
            # Terminated, so it is logged once, never retried.
            log.error("consumer.forged_event", durable=self._durable, subject=msg.subject,
                      claimed=subject_of(event))  # fmt: skip
            await msg.term()
            self._metrics.event_handled(self._stage, "forged")
            return
        if not isinstance(event, self._event_type):
            # Only a publisher that got the subject wrong puts one here; no retry can help.
            log.error("consumer.unexpected_event", durable=self._durable, subject=msg.subject,
                      type=type(event).__name__, expected=self._event_type.__name__)  # fmt: skip
            await msg.term()
            self._metrics.event_handled(self._stage, "poison")
            return
        with structlog.contextvars.bound_contextvars(**scope_of(event), event_id=event.event_id):
            await self._run_handler(msg, event, attempt)

    async def _run_handler(self, msg: Msg, event: E, attempt: int) -> None:
        keepalive = _Keepalive(msg, self._ack_wait_s / KEEPALIVES_PER_ACK_WAIT)
        start = time.perf_counter()
        outcome = "cancelled"  # kept if a stop cancels the handler: JetStream redelivers it
        try:
            await self._handler(event)
        except Permanent as exc:
            outcome = await self._settle_failure(msg, event, str(exc), attempt, final=True)
        except Retry as exc:
            age_s = (now() - event.occurred_at).total_seconds()
            if age_s < (self._retry_budget_s if exc.budget_s is None else exc.budget_s):
                log.debug("consumer.retry_later", reason=str(exc), age_s=round(age_s, 1))
                await msg.nak(delay=exc.delay_s)
                self._deferrals[msg.metadata.sequence.stream] = (
                    self._deferrals.get(msg.metadata.sequence.stream, 0) + 1
                )
                outcome = "deferred"
            else:
                reason = f"gave up waiting after {age_s:.0f}s: {exc}"
                outcome = await self._settle_failure(msg, event, reason, attempt, final=True)
        except Exception as exc:  # task boundary: any handler bug becomes a retry, then a failure
            final = attempt >= self._max_attempts
            log.warning(
                "consumer.handler_failed",
                durable=self._durable,
                attempt=attempt,
                final=final,
                error=repr(exc),
                exc_info=final,
            )
            outcome = await self._settle_failure(msg, event, _reason(exc), attempt, final=final)
        else:
            await msg.ack()
            outcome = "ok"
        finally:
            keepalive.cancel()
            if outcome in ("ok", "gave_up"):
                self._deferrals.pop(msg.metadata.sequence.stream, None)
            self._metrics.event_handled(self._stage, outcome, time.perf_counter() - start)

    async def _settle_failure(
        self, msg: Msg, event: E, reason: str, attempt: int, *, final: bool
    ) -> str:
        """Nak for a retry or give up; returns the outcome to count ("error" or "gave_up")."""
        if not final:
            await msg.nak(delay=backoff_s(attempt))
            return "error"
        try:
            await self._give_up(event, reason)
        except Exception as exc:  # noqa: BLE001 - task boundary: recording failed; retry later
            log.error("consumer.give_up_failed", durable=self._durable, error=repr(exc))
            await msg.nak(delay=backoff_s(attempt))
            return "error"
        log.error("consumer.gave_up", durable=self._durable, attempts=attempt, reason=reason)
        await msg.term()
        return "gave_up"


class _Keepalive:
    """Progress acks for one message while its handler runs. A timer rather than a task of
    its own: most handlers end within the first interval, and then it cost one timer."""

    def __init__(self, msg: Msg, interval_s: float) -> None:
        self._msg = msg
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._timer = self._loop.call_later(interval_s, self._fire)

    def _fire(self) -> None:
        self._task = self._loop.create_task(self._send())

    async def _send(self) -> None:
        try:
            await self._msg.in_progress()
        except nats.errors.Error as exc:
            log.debug("consumer.keepalive_failed", error=str(exc))
        if not self._stopped:
            self._timer = self._loop.call_later(self._interval_s, self._fire)

    def cancel(self) -> None:
        self._stopped = True
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def stage_consumer(
    bus: Bus,
    settings: Settings,
    *,
    durable: str,
    event_type: type[E],
    handler: Handler[E],
    give_up: GiveUp[E],
    retry_budget_s: float | None = None,
    metrics: Metrics | None = None,
    room: Room | None = None,
    stage: str | None = None,
) -> Consumer[E]:
    """A consumer configured from the process's settings, as every stage uses it."""
    return Consumer(
        bus,
        durable=durable,
        event_type=event_type,
        handler=handler,
        give_up=give_up,
        concurrency=settings.concurrency,
        ack_wait_s=settings.ack_wait_s,
        max_attempts=settings.max_deliver,
        retry_budget_s=retry_budget_s,
        metrics=metrics,
        room=room,
        stage=stage,
    )
