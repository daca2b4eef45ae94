"""Heartbeats: a ready machine whose daemon goes quiet becomes unresponsive, then ready again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import msgspec
import pytest

from contracts.bus import subjects
from contracts.bus.events import MachineReady, MachineUnresponsive
from contracts.ids import new_machine_id
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.local.processes import running_pid
from tests.waiters import wait_until


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, heartbeat_s=0.2, missed_heartbeats=3)


async def ready_machine(stack: FleetClient, settings: Settings) -> tuple[str, int]:
    inst = await stack.create_instance("beats")
    machine = await stack.create_machine(inst.id)
    await stack.wait_for(machine.id, {"ready"}, timeout_s=30)
    pid = running_pid(settings.data_path / "machines" / machine.id, machine.id)
    assert pid is not None
    return machine.id, pid


async def next_of(stack: FleetClient, machine_id: str, kind: type, after: int) -> int:
    async with asyncio.timeout(15):
        async with contextlib.aclosing(stack.events(machine_id, since=after)) as events:
            async for seq, event in events:
                if isinstance(event, kind):
                    return seq
    raise AssertionError("event stream ended")


async def test_missed_heartbeats_then_recovery(
    stack: FleetClient, stack_settings: Settings
) -> None:
    machine_id, pid = await ready_machine(stack, stack_settings)
    ready_seq = await next_of(stack, machine_id, MachineReady, 0)

    os.kill(pid, signal.SIGSTOP)  # the daemon freezes: no beats, no answers
    try:
        quiet_seq = await next_of(stack, machine_id, MachineUnresponsive, ready_seq)
        machine = await stack.get_machine(machine_id)
        assert machine.status is MachineStatus.UNRESPONSIVE
        assert machine.status_reason.startswith("no heartbeat for")
    finally:
        os.kill(pid, signal.SIGCONT)

    await next_of(stack, machine_id, MachineReady, quiet_seq)
    machine = await stack.get_machine(machine_id)
    assert machine.status is MachineStatus.READY
    assert machine.status_reason == "heartbeats resumed"


async def sweep_passed(store: Store, bus: Bus) -> None:
    """Returns once the monitor recorded a beat and, a full window later, swept it: a beat of a
    machine that does not exist, which the sweep forgets once it is stale. Whatever the monitor
    would do to a machine in that window, it has done by then."""
    probe = new_machine_id()
    await bus.nc.publish(subjects.heartbeat(probe), b"{}")
    await wait_until(lambda: _watched(store, probe))
    await wait_until(lambda: _not_watched(store, probe))


async def _watched(store: Store, machine_id: str) -> bool:
    return await store.heartbeats.last_beat(machine_id) is not None


async def _not_watched(store: Store, machine_id: str) -> bool:
    return await store.heartbeats.last_beat(machine_id) is None


async def test_a_dead_daemon_stays_unresponsive(
    stack: FleetClient, stack_settings: Settings, store: Store, bus: Bus
) -> None:
    machine_id, pid = await ready_machine(stack, stack_settings)
    os.kill(pid, signal.SIGKILL)
    await next_of(stack, machine_id, MachineUnresponsive, 0)
    for _ in range(3):  # several more heartbeat windows pass: nothing brings it back
        await sweep_passed(store, bus)
    assert (await stack.get_machine(machine_id)).status is MachineStatus.UNRESPONSIVE
    assert await store.heartbeats.last_beat(machine_id) is not None  # still watched


async def test_archived_machines_are_not_watched(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    machine_id, _ = await ready_machine(stack, stack_settings)
    await wait_until(lambda: _watched(store, machine_id))  # its beats are being recorded
    await stack.archive_machine(machine_id)
    # A sweep after its last beat went stale found it archived and stopped watching it.
    await wait_until(lambda: _not_watched(store, machine_id))
    await stack.wait_for(machine_id, [MachineStatus.ARCHIVED], 30)
