"""The stage consumer against a real JetStream: acks, retries, giving up, poison, draining."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from contracts.bus import subjects
from contracts.bus.events import Event, MachineArchived, MachineCreated, encode_event, now
from contracts.bus.subjects import EventKind
from contracts.ids import new_event_id, new_machine_id
from controlplane.bus import Bus
from controlplane.events.consumer import Consumer, Permanent, Retry
from controlplane.process.metrics import Metrics
from tests.waiters import wait_until


def created(machine_id: str | None = None, **kw: object) -> MachineCreated:
    return MachineCreated(
        event_id=new_event_id(),
        machine_id=machine_id or new_machine_id(),
        instance_id="i-0000000000000000",
        provider="local",
        **kw,
    )  # type: ignore[arg-type]


class Recorder:
    """A handler whose behaviour per attempt is scripted, recording every call."""

    def __init__(self, *script: Exception | None) -> None:
        self.script = list(script)
        self.calls: Counter[str] = Counter()
        self.gave_up: dict[str, str] = {}
        self.done = asyncio.Event()

    async def handle(self, event: Event) -> None:
        self.calls[event.machine_id] += 1
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        self.done.set()

    async def give_up(self, event: Event, reason: str) -> None:
        self.gave_up[event.machine_id] = reason
        self.done.set()


def consumer(bus: Bus, rec: Recorder, **kw: float) -> Consumer:
    return Consumer(
        bus,
        durable="test",
        event_type=MachineCreated,
        handler=rec.handle,
        give_up=rec.give_up,
        ack_wait_s=kw.pop("ack_wait_s", 5.0),
        max_attempts=3,
        **kw,
    )  # type: ignore[arg-type]


async def pending(bus: Bus) -> tuple[int, int]:
    info = await bus.js.consumer_info(subjects.STREAM_NAME, "test")
    return info.num_pending, info.num_ack_pending


async def settled(bus: Bus) -> None:
    async def nothing_left() -> bool:
        return await pending(bus) == (0, 0)

    await wait_until(nothing_left)


async def test_transient_failures_are_retried_then_acked(bus: Bus) -> None:
    rec = Recorder(RuntimeError("flaky"), RuntimeError("flaky"))
    event = created()
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 15)
        await settled(bus)
    assert rec.calls[event.machine_id] == 3
    assert rec.gave_up == {}


async def test_gives_up_after_max_attempts_with_the_reason(bus: Bus) -> None:
    rec = Recorder(*[RuntimeError("disk on fire")] * 10)
    event = created()
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 20)
        await settled(bus)
    assert rec.calls[event.machine_id] == 3
    assert rec.gave_up[event.machine_id] == "RuntimeError: disk on fire"


async def test_permanent_gives_up_at_once(bus: Bus) -> None:
    rec = Recorder(Permanent("git clone failed: no such repo"))
    event = created()
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 10)
        await settled(bus)
    assert rec.calls[event.machine_id] == 1
    assert rec.gave_up[event.machine_id] == "git clone failed: no such repo"


async def test_poison_event_does_not_block_the_next(bus: Bus) -> None:
    rec = Recorder()
    good = created()
    async with consumer(bus, rec):
        await bus.js.publish(subjects.event(EventKind.CREATED, "m-poison"), b"{not an event")
        await bus.publish(good)
        await asyncio.wait_for(rec.done.wait(), 10)
        await settled(bus)
    assert rec.calls == Counter({good.machine_id: 1})


async def test_an_event_of_another_class_is_terminated_not_handled(bus: Bus) -> None:
    rec = Recorder()
    stray = MachineArchived(event_id=new_event_id(), machine_id=new_machine_id(), reason="x")
    good = created()
    async with consumer(bus, rec):
        # A publisher that got the subject wrong: a valid event, but not this consumer's class.
        await bus.js.publish(subjects.event(EventKind.CREATED, stray.machine_id),
                             encode_event(stray))  # fmt: skip
        await bus.publish(good)
        await asyncio.wait_for(rec.done.wait(), 10)
        await settled(bus)  # the stray one is settled too (terminated), not left pending
    assert rec.calls == Counter({good.machine_id: 1})
    assert rec.gave_up == {}


async def test_retry_waits_without_counting_failures(bus: Bus) -> None:
    rec = Recorder(*[Retry("not provisioned yet", delay_s=0.05)] * 6)
    event = created()
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 15)
    assert rec.calls[event.machine_id] == 7  # more than max_attempts, and no give-up
    assert rec.gave_up == {}


async def test_deferrals_do_not_count_as_failed_attempts(bus: Bus) -> None:
    # Deferred four times (an earlier stage was behind), then one real failure: with
    # max_attempts=3 that failure is attempt 1 of 3, so the event is retried, not given up.
    rec = Recorder(*[Retry("not yet", delay_s=0.01)] * 4, RuntimeError("flaky"))
    event = created()
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 15)
        await settled(bus)
    assert rec.gave_up == {}
    assert rec.calls[event.machine_id] == 6


async def test_retry_gives_up_once_the_event_is_too_old(bus: Bus) -> None:
    rec = Recorder(*[Retry("still waiting")] * 5)
    event = created(occurred_at=now() - timedelta(hours=1))
    async with consumer(bus, rec):
        await bus.publish(event)
        await asyncio.wait_for(rec.done.wait(), 10)
    assert "still waiting" in rec.gave_up[event.machine_id]


async def test_stop_drains_in_flight_handlers(bus: Bus) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    async def never(event: Event, reason: str) -> None:
        raise AssertionError(reason)

    c = Consumer(bus, durable="test", event_type=MachineCreated, handler=slow, give_up=never)
    async with c:
        await bus.publish(created())
        await asyncio.wait_for(started.wait(), 10)
    assert finished.is_set()  # stop() waited for the handler
    await c.stop()  # and stopping twice is harmless
    await settled(bus)  # the server takes in acks on a queue of the consumer's: not at once


async def test_a_long_handler_is_kept_alive_past_ack_wait(bus: Bus) -> None:
    calls = Counter[str]()

    async def long(event: Event) -> None:
        calls[event.machine_id] += 1
        await asyncio.sleep(3.5)  # longer than the 1.5 s ack wait: in_progress must extend it

    async def never(event: Event, reason: str) -> None:
        raise AssertionError(reason)

    event = created()
    async with Consumer(
        bus, durable="test", event_type=MachineCreated, handler=long, give_up=never, ack_wait_s=1.5
    ):
        await bus.publish(event)
        await settled(bus)
    assert calls[event.machine_id] == 1


async def test_duplicate_publish_is_dropped_by_the_stream(bus: Bus) -> None:
    event = created()
    await bus.publish(event)
    await bus.publish(event)  # same eventId -> same Nats-Msg-Id
    info = await bus.js.stream_info(subjects.STREAM_NAME)
    assert info.state.messages == 1


@pytest.mark.parametrize("n", [40])
async def test_handles_many_events_concurrently(bus: Bus, n: int) -> None:
    gate = asyncio.Event()
    seen: set[str] = set()

    async def wait_for_all(event: Event) -> None:
        seen.add(event.machine_id)
        if len(seen) == n:
            gate.set()
        await asyncio.wait_for(gate.wait(), 10)  # only completes if all n run at once

    async def never(event: Event, reason: str) -> None:
        raise AssertionError(reason)

    async with Consumer(
        bus,
        durable="test",
        event_type=MachineCreated,
        handler=wait_for_all,
        give_up=never,
        concurrency=64,
    ):
        await bus.publish_many([created() for _ in range(n)])
        await asyncio.wait_for(gate.wait(), 10)
        await settled(bus)
    assert len(seen) == n


async def test_an_event_naming_another_machine_than_its_subject_is_terminated_and_counted(
    bus: Bus,
) -> None:
    rec = Recorder()
    metrics = Metrics()
    forged, good = created(), created()
    async with consumer(bus, rec, metrics=metrics):  # type: ignore[arg-type]
        # Right kind, wrong machine: what a machine can publish on its own subject.
        await bus.js.publish(subjects.event(EventKind.CREATED, good.machine_id),
                             encode_event(forged))  # fmt: skip
        await bus.publish(good)
        await asyncio.wait_for(rec.done.wait(), 10)
        await settled(bus)
    assert rec.calls == Counter({good.machine_id: 1})
    assert metrics.events.labels("test", "forged")._value.get() == 1
