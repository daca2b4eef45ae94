"""Each idempotency rule, by replaying real events onto the stream (as a redelivery would)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy

from base import procinfo
from contracts.bus.events import (
    DaemonStatusReported,
    Event,
    MachineCreated,
    MachineProvisioned,
    MachineReady,
    SetupPushed,
    subject_of,
)
from contracts.bus.subjects import STREAM_NAME
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.local.processes import running_pid
from providers.local.supervision import stop_local
from tests.conftest import CloneLog
from tests.fakes.bus import subject_matches
from tests.waiters import wait_until


async def events_of(stack: FleetClient, machine_id: str) -> list[Event]:
    out: list[Event] = []
    async with contextlib.aclosing(stack.events(machine_id)) as events:
        async for _, event in events:
            out.append(event)
            if isinstance(event, MachineReady):
                return out
    return out


@dataclass
class Acks:
    """(consumer, message data) of every JetStream message this process settled (acked, or
    ended for good): the stack's services run in it (tests/conftest.py ``running_stack``)."""

    seen: list[tuple[str, bytes]] = field(default_factory=list)

    def by(self, marker: str) -> set[str]:
        """The consumers that settled a message holding ``marker``."""
        return {consumer for consumer, data in self.seen if marker.encode() in data}


@pytest.fixture
def acks(monkeypatch: pytest.MonkeyPatch) -> Acks:
    made = Acks()
    for name in ("ack", "term"):
        settle = getattr(Msg, name)

        async def recorded(msg: Msg, settle: Callable[[Msg], Awaitable[None]] = settle) -> None:
            await settle(msg)
            made.seen.append((msg.metadata.consumer or "", msg.data))

        monkeypatch.setattr(Msg, name, recorded)
    return made


#: The pipeline's stages: what a replay sets off downstream (a stage publishes its next event
#: before it settles the one it handled) is done once these hold nothing. Not the boot
#: watchdog (``prober-boot``), which keeps each machine's ``provisioned`` event for 5 s: a
#: replay of that event is waited for as the replay's own.
STAGES = ("provisioner", "setup_pusher", "prober")


async def replay(bus: Bus, acks: Acks, event: Event) -> None:
    """Publish a stored event again under a new id (a duplicate the window would not catch), and
    wait until every consumer it reaches has handled and settled that one message, then until
    the stages hold nothing (whatever the replay set off has run its course)."""
    again = msgspec.structs.replace(event, event_id="replay-" + event.event_id)
    subject = subject_of(event)
    takers = set()
    for info in await bus.js.consumers_info(STREAM_NAME):
        filters = [info.config.filter_subject or "", *(info.config.filter_subjects or [])]
        acked = info.config.ack_policy == AckPolicy.EXPLICIT  # not a watcher's
        if acked and any(subject_matches(f, subject) for f in filters if f):
            takers.add(info.name)
    assert takers, f"no consumer takes {subject}"
    await bus.publish(again)
    await wait_until(lambda: acks.by(again.event_id) >= takers, timeout=20)

    async def stages_idle() -> bool:
        for durable in STAGES:
            info = await bus.js.consumer_info(STREAM_NAME, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await wait_until(stages_idle, timeout=20)


def daemons_of(machine_id: str) -> list[int]:
    """Every live daemon process of this machine (not its sandbox nor its supervisor)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            argv = procinfo.cmdline(int(entry.name))
            wrapper = not argv or "bwrap" in argv[0] or "daemon.supervise" in argv
            if f"FLEET_MACHINE_ID={machine_id}".encode() in environ and not wrapper:
                found.append(int(entry.name))
    return found


async def ready_machine(stack: FleetClient, repo: Path | None = None) -> tuple[str, list[Event]]:
    inst = await stack.create_instance("replays")
    if repo is not None:
        await stack.add_repo(inst.id, str(repo), "main", "app")
    machine = await stack.create_machine(inst.id)
    return machine.id, await events_of(stack, machine.id)


async def test_replayed_created_does_not_start_a_second_daemon(
    stack: FleetClient, settings: Settings, bus: Bus, acks: Acks
) -> None:
    mid, events = await ready_machine(stack)
    pid = running_pid(settings.data_path / "machines" / mid, mid)
    created = next(e for e in events if isinstance(e, MachineCreated))
    daemons = daemons_of(mid)
    await replay(bus, acks, created)
    assert len(daemons) == 1
    assert daemons_of(mid) == daemons
    assert running_pid(settings.data_path / "machines" / mid, mid) == pid
    assert (await stack.get_machine(mid)).status is MachineStatus.READY


async def test_a_machine_whose_pid_was_never_recorded_is_adopted_not_started_twice(
    stack: FleetClient, settings: Settings, bus: Bus, acks: Acks
) -> None:
    # What a provisioner SIGKILLed between starting a machine and writing daemon.pid leaves
    # (seen in the chaos test under CPU load): the machine runs, nothing records it.
    mid, events = await ready_machine(stack)
    machine_dir = settings.data_path / "machines" / mid
    pid = running_pid(machine_dir, mid)
    (machine_dir / "daemon.pid").unlink()
    daemons = daemons_of(mid)
    await replay(bus, acks, next(e for e in events if isinstance(e, MachineCreated)))
    assert daemons_of(mid) == daemons  # adopted: no second machine
    assert running_pid(machine_dir, mid) == pid
    (machine_dir / "daemon.pid").unlink()
    assert stop_local(machine_dir, mid, grace_s=3.0)  # and stopping finds it all the same
    await wait_until(lambda: daemons_of(mid) == [], timeout=10)


async def test_replayed_report_mid_setup_does_not_clone_twice(
    stack: FleetClient,
    store: Store,
    bus: Bus,
    acks: Acks,
    bare_repo: Path,
    clone_log: CloneLog,
) -> None:
    mid, events = await ready_machine(stack, bare_repo)
    assert len(clone_log.homes()) == 1
    # As if the setup pusher died after the clone, before recording it: status setting-up,
    # nothing recorded. The redelivered report must finish setup without cloning again.
    await store.redis.hset(store.keys.k_machine(mid), "status", "setting-up")
    await store.redis.delete(store.keys.k_cloned(mid))
    report = next(e for e in events if isinstance(e, DaemonStatusReported))
    await replay(bus, acks, report)
    assert len(clone_log.homes()) == 1
    machine = await stack.get_machine(mid)
    assert machine.status is MachineStatus.READY, machine.status_reason


async def test_late_events_never_move_a_machine_backwards(
    stack: FleetClient, bus: Bus, acks: Acks, bare_repo: Path, clone_log: CloneLog
) -> None:
    mid, events = await ready_machine(stack, bare_repo)
    before = await stack.get_machine(mid)
    for kind in (MachineCreated, MachineProvisioned, DaemonStatusReported, SetupPushed):
        await replay(bus, acks, next(e for e in events if isinstance(e, kind)))
    after = await stack.get_machine(mid)
    assert after.status is MachineStatus.READY
    assert after.updated_at == before.updated_at  # not even a repeated write
    assert len(clone_log.homes()) == 1


async def test_a_poison_event_does_not_block_the_next_machine(stack: FleetClient, bus: Bus) -> None:
    await bus.js.publish("machine.created.m-0000000000000000", b'{"type":"created","junk":1}')
    await bus.js.publish("machine.daemon-status-reported.m-0000000000000001", b"\xff\xfe")
    mid, events = await ready_machine(stack)
    assert isinstance(events[-1], MachineReady)
    assert (await stack.get_machine(mid)).status is MachineStatus.READY
