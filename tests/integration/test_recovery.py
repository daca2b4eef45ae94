"""Recovery in seconds: an event held by a stage replica that is SIGKILLed goes to another
replica within 5 s, with the stage defaults (no test-only ack wait)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from contracts.bus import subjects
from contracts.bus.events import MachineCreated
from controlplane.bus import Bus
from controlplane.events.consumer import stage_consumer
from controlplane.settings import Settings
from fleet.up import NatsServer
from tests.integration.test_consumer import created

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def holder(nats_server: NatsServer) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.holder", nats_server.url],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield proc
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def _line(proc: subprocess.Popen[str]) -> str:
    """The holder's next line of its own (``ready``, ``holding ...``), past its log lines."""
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if line.startswith(("ready", "holding")):
            return line.strip()
    return ""


async def test_an_event_held_by_a_killed_replica_is_redelivered_within_5s(
    nats_server: NatsServer, holder: subprocess.Popen[str]
) -> None:
    settings = Settings(nats_url=nats_server.url)  # the defaults, as deployed
    assert await asyncio.to_thread(_line, holder) == "ready"
    got: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def take(event: MachineCreated) -> None:
        got.put_nowait((event.machine_id, time.monotonic()))

    async def never(event: MachineCreated, reason: str) -> None:
        raise AssertionError(reason)

    async with Bus(settings, name="test") as bus:
        event = created()
        await bus.publish(event)
        assert await asyncio.to_thread(_line, holder) == f"holding {event.machine_id}"
        async with stage_consumer(
            bus, settings, durable="test", event_type=MachineCreated, handler=take, give_up=never
        ):
            holder.kill()
            killed = time.monotonic()
            machine_id, at = await asyncio.wait_for(got.get(), timeout=40)
    assert machine_id == event.machine_id
    assert at - killed <= 5.0, f"redelivered {at - killed:.1f}s after the kill"


async def test_a_consumer_made_by_an_older_version_gets_the_new_ack_wait(bus: Bus) -> None:
    old = ConsumerConfig(
        durable_name="test",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        filter_subject=subjects.event_filter(subjects.EventKind.CREATED),
    )
    await bus.js.add_consumer(subjects.STREAM_NAME, config=old)
    settings = Settings()  # the stage defaults (the bus is already connected)

    async def nothing(event: MachineCreated) -> None: ...

    async def never(event: MachineCreated, reason: str) -> None:
        raise AssertionError(reason)

    async with stage_consumer(
        bus, settings, durable="test", event_type=MachineCreated, handler=nothing, give_up=never
    ):
        info = await bus.js.consumer_info(subjects.STREAM_NAME, "test")
    assert info.config.ack_wait == settings.ack_wait_s
