"""Each idempotency rule, by replaying real events onto the stream (as a redelivery would)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec

from base import procinfo
from contracts.events import (
    DaemonStatusReported,
    Event,
    MachineCreated,
    MachineProvisioned,
    MachineReady,
    SetupPushed,
)
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.local import running_pid, stop_local
from tests.conftest import CloneLog
from tests.waiters import wait_until

DURABLES = ("provisioner", "setup_pusher", "prober", "prober-boot")


async def events_of(stack: FleetClient, machine_id: str) -> list[Event]:
    out: list[Event] = []
    async with contextlib.aclosing(stack.events(machine_id)) as events:
        async for _, event in events:
            out.append(event)
            if isinstance(event, MachineReady):
                return out
    return out


async def replay(bus: Bus, event: Event) -> None:
    """Publish a stored event again under a new id (a duplicate the window would not catch)."""
    await bus.publish(msgspec.structs.replace(event, event_id="replay-" + event.event_id))

    async def all_consumed() -> bool:
        for durable in DURABLES:
            info = await bus.js.consumer_info("FLEET_MACHINE_EVENTS", durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await wait_until(all_consumed, timeout=20)


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
    stack: FleetClient, settings: Settings, bus: Bus
) -> None:
    mid, events = await ready_machine(stack)
    pid = running_pid(settings.data_path / "machines" / mid, mid)
    created = next(e for e in events if isinstance(e, MachineCreated))
    daemons = daemons_of(mid)
    await replay(bus, created)
    assert len(daemons) == 1
    assert daemons_of(mid) == daemons
    assert running_pid(settings.data_path / "machines" / mid, mid) == pid
    assert (await stack.get_machine(mid)).status is MachineStatus.READY


async def test_a_machine_whose_pid_was_never_recorded_is_adopted_not_started_twice(
    stack: FleetClient, settings: Settings, bus: Bus
) -> None:
    # What a provisioner SIGKILLed between starting a machine and writing daemon.pid leaves
    # (seen in the chaos test under CPU load): the machine runs, nothing records it.
    mid, events = await ready_machine(stack)
    machine_dir = settings.data_path / "machines" / mid
    pid = running_pid(machine_dir, mid)
    (machine_dir / "daemon.pid").unlink()
    daemons = daemons_of(mid)
    await replay(bus, next(e for e in events if isinstance(e, MachineCreated)))
    assert daemons_of(mid) == daemons  # adopted: no second machine
    assert running_pid(machine_dir, mid) == pid
    (machine_dir / "daemon.pid").unlink()
    assert stop_local(machine_dir, mid, grace_s=3.0)  # and stopping finds it all the same
    await wait_until(lambda: daemons_of(mid) == [], timeout=10)


async def test_replayed_report_mid_setup_does_not_clone_twice(
    stack: FleetClient, store: Store, bus: Bus, bare_repo: Path, clone_log: CloneLog
) -> None:
    mid, events = await ready_machine(stack, bare_repo)
    assert len(clone_log.homes()) == 1
    # As if the setup pusher died after the clone, before recording it: status setting-up,
    # nothing recorded. The redelivered report must finish setup without cloning again.
    await store.redis.hset(store.keys.k_machine(mid), "status", "setting-up")
    await store.redis.delete(store.keys.k_cloned(mid))
    report = next(e for e in events if isinstance(e, DaemonStatusReported))
    await replay(bus, report)
    assert len(clone_log.homes()) == 1
    machine = await stack.get_machine(mid)
    assert machine.status is MachineStatus.READY, machine.status_reason


async def test_late_events_never_move_a_machine_backwards(
    stack: FleetClient, bus: Bus, bare_repo: Path, clone_log: CloneLog
) -> None:
    mid, events = await ready_machine(stack, bare_repo)
    before = await stack.get_machine(mid)
    for kind in (MachineCreated, MachineProvisioned, DaemonStatusReported, SetupPushed):
        await replay(bus, next(e for e in events if isinstance(e, kind)))
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
