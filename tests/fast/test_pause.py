"""``machines.pause``/``machines.resume``: the rules, in memory (the real stage services on
fakeredis and the fake bus). Real runsc sandboxes with real daemons, a process's memory across
a pause: tests/integration/test_gvisor_pause.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from contracts.bus.events import (
    MachinePaused,
    MachinePauseRefused,
    MachineResumed,
    MachineResumeRequested,
    MachineUnresponsive,
)
from contracts.errors import Conflict, Forbidden, NotFound, NotSupported, RunningMachinesLimit
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.rpc.admission import check_running_limit
from tests.fakes.bus import FakeBus
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World, make_world
from tests.fast.test_gateway import MISSING_MACHINE, token_of, two_instances
from tests.fast.test_runtime import fake_runsc, with_runsc

method = pytest.mark.gateway_method


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Wake on access off (``FLEET_WAKE_ON_ACCESS=false``): a call that needs a paused machine
    is refused at once, as these tests say; with it on (the default): tests/fast/test_wake.py."""
    return msgspec.structs.replace(settings, wake_on_access=False)


async def ready_gvisor(world: World, tmp_path: Path, instance_id: str | None = None) -> Machine:
    with_runsc(world, fake_runsc(tmp_path))
    iid = instance_id or (await world.instance()).id
    created = await world.rpc("machines.create", {"instanceId": iid, "runtime": "gvisor"})
    await world.bus.settle()
    machine = await world.machine(created["id"])
    assert machine.status is S.READY, machine.status_reason
    return machine


@method("machines.pause", "machines.resume")
async def test_pause_then_resume_goes_paused_and_back_ready_with_events(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    pausing = await world.rpc("machines.pause", {"machineId": m.id})
    assert (pausing["status"], pausing["statusReason"]) == ("pausing", "paused by request")
    await world.bus.settle()
    assert world.provider.pauses == [m.id]
    assert (await world.machine(m.id)).status is S.PAUSED
    [paused] = [e for e in world.bus.events if isinstance(e, MachinePaused)]
    assert (paused.machine_id, paused.bytes) == (m.id, 4096)
    assert paused.duration_ms >= 0
    calls = len(world.daemons.calls)
    with pytest.raises(Conflict) as refused:  # its daemon is not called while paused
        await world.rpc("machines.exec", {"machineId": m.id, "command": ["true"]})
    assert refused.value.data is not None
    assert refused.value.data["status"] == "paused"
    assert "machines.resume" in refused.value.data["hint"]
    assert len(world.daemons.calls) == calls
    again = await world.rpc("machines.pause", {"machineId": m.id})  # a repeat: no change
    assert again["status"] == "paused"
    assert world.provider.pauses == [m.id]

    resuming = await world.rpc("machines.resume", {"machineId": m.id})
    assert resuming["status"] == "resuming"
    await world.bus.settle()
    assert world.provider.resumes == [m.id]
    assert (await world.machine(m.id)).status is S.READY
    [resumed] = [e for e in world.bus.events if isinstance(e, MachineResumed)]
    assert (resumed.machine_id, resumed.by) == (m.id, "request")
    assert resumed.duration_ms >= 0
    again = await world.rpc("machines.resume", {"machineId": m.id})  # ready: no change
    assert again["status"] == "ready"
    assert world.provider.resumes == [m.id]
    ran = await world.rpc("machines.exec", {"machineId": m.id, "command": ["test", "-f", "/x"]})
    assert ran["exitCode"] == 1  # answered by its daemon again


@method("machines.pause", "machines.resume")
async def test_a_resumed_machine_keeps_its_new_sandbox_id_and_a_provisioner_start_leaves_it(
    world: World, tmp_path: Path
) -> None:
    """A restored sandbox is a new process: its id is the machine's, so the provisioner's start
    of its machines (a restart of it) finds it running, and does not take its daemon for one
    started anew (unresponsive until a heartbeat)."""
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    await world.rpc("machines.resume", {"machineId": m.id})
    await world.bus.settle()
    resumed = await world.machine(m.id)
    assert resumed.external_id == world.provider.resumed_as[m.id] != m.external_id
    assert await world.provisioner.resume() == 0
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.READY
    assert not [e for e in world.bus.events if isinstance(e, MachineUnresponsive)]


@method("machines.pause", "machines.get")
async def test_a_paused_machine_says_the_size_of_its_pause_and_keeps_it_after_resume(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    assert (await world.rpc("machines.get", {"machineId": m.id}))["pausedBytes"] is None
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    got = await world.rpc("machines.get", {"machineId": m.id})
    assert (got["status"], got["pausedBytes"]) == ("paused", 4096)  # the provider's image
    await world.rpc("machines.resume", {"machineId": m.id})
    await world.bus.settle()
    got = await world.rpc("machines.get", {"machineId": m.id})
    assert (got["status"], got["pausedBytes"]) == ("ready", 4096)  # its last pause's


@method("machines.pause")
async def test_a_namespaces_machine_cannot_be_paused_and_says_its_runtime(world: World) -> None:
    m = await world.ready_machine()
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.pause", {"machineId": m.id})
    assert refused.value.code == 1601
    assert "namespaces" in refused.value.message
    assert refused.value.data == {"runtime": "namespaces"}
    assert world.provider.pauses == []
    assert (await world.machine(m.id)).status is S.READY


@method("machines.pause", "machines.resume")
async def test_only_a_ready_machine_pauses_and_only_a_paused_one_resumes(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    with pytest.raises(Conflict) as refused:  # on its way into a pause: not yet resumable
        await world.rpc("machines.resume", {"machineId": m.id})
    assert refused.value.data == {"status": "pausing"}
    await world.bus.settle()
    await world.rpc("machines.resume", {"machineId": m.id})
    await world.bus.settle()
    world.provider.pauses.clear()
    world.provider.resumes.clear()
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    with pytest.raises(Conflict) as refused:
        await world.rpc("machines.pause", {"machineId": m.id})
    assert refused.value.code == 1009
    assert refused.value.data == {"status": "stopped"}
    with pytest.raises(Conflict) as refused:
        await world.rpc("machines.resume", {"machineId": m.id})
    assert refused.value.data == {"status": "stopped"}
    assert world.provider.pauses == world.provider.resumes == []


@method("machines.pause", "machines.resume")
async def test_pause_and_resume_are_checked(world: World, tmp_path: Path) -> None:
    a, b = await two_instances(world)
    m = await ready_gvisor(world, tmp_path, a)
    for name in ("machines.pause", "machines.resume"):
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": m.id}, token_of(b))
        with pytest.raises(NotFound):
            await world.rpc(name, {"machineId": MISSING_MACHINE})
    assert world.provider.pauses == []


async def test_a_refused_pause_leaves_the_machine_ready_and_says_why(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    world.provider.fail_pause = Conflict("a process of the machine holds a TCP connection")
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    got = await world.machine(m.id)
    assert got.status is S.READY
    assert "TCP connection" in (got.status_reason or "")
    assert not [e for e in world.bus.events if isinstance(e, MachinePaused)]
    [said] = [e for e in world.bus.events if isinstance(e, MachinePauseRefused)]
    assert "TCP connection" in said.reason


async def test_a_paused_machine_can_be_stopped_and_no_longer_counts_as_running(
    world: World, tmp_path: Path
) -> None:
    iid = (await world.instance()).id
    m = await ready_gvisor(world, tmp_path, iid)
    await world.rpc("instances.setLimits", {"instanceId": iid, "maxRunningMachines": 1})
    with pytest.raises(RunningMachinesLimit):
        await check_running_limit(world.store, iid, None)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    await check_running_limit(world.store, iid, None)  # a paused one is not running
    stopping = await world.rpc("machines.stop", {"machineId": m.id})
    assert stopping["status"] == "stopping"
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.STOPPED
    assert world.provider.stops == [m.id]


async def test_a_resumed_machine_is_ready_only_once_its_daemon_answers(
    settings: Settings, store: Store, bus: FakeBus, tmp_path: Path
) -> None:
    """A restored sandbox's daemon reconnects a moment after the restore: until it answers,
    the machine is still resuming, and a call sent the moment it reads ready finds it."""
    clock = ManualClock()
    world = make_world(settings, store, bus, clock=clock)
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    world.provider.resumed_daemon_serves = False
    await world.rpc("machines.resume", {"machineId": m.id})
    settling = asyncio.ensure_future(world.bus.settle())
    await clock.advance(5.0)
    assert world.provider.resumes == [m.id]  # restored, its daemon not back yet
    assert (await world.machine(m.id)).status is S.RESUMING
    assert not [e for e in world.bus.events if isinstance(e, MachineResumed)]
    asked = len(world.daemons.calls_of("daemon.getVersion", m.id))
    assert asked > 1  # asked again and again
    # Delivered again meanwhile (its first provisioner stopped while it waited): restored once.
    [requested] = world.bus.of(MachineResumeRequested, m.id)
    again = asyncio.ensure_future(world.provisioner.pause_resume.on_resume_requested(requested))
    await clock.advance(1.0)
    assert world.provider.resumes == [m.id]
    world.daemons[m.id].mode = "up"  # it reconnected
    await clock.advance(1.0)
    await asyncio.wait_for(settling, 10)
    await asyncio.wait_for(again, 10)
    assert (await world.machine(m.id)).status is S.READY
    [resumed] = [e for e in world.bus.events if isinstance(e, MachineResumed)]
    assert resumed.duration_ms >= 1000  # to its daemon's answer (the later delivery's)

    ran = await world.rpc("machines.exec", {"machineId": m.id, "command": ["test", "-f", "/x"]})
    assert ran["exitCode"] == 1  # answered by its daemon


async def test_a_resumed_machine_whose_daemon_never_answers_is_unresponsive_not_ready(
    settings: Settings, store: Store, bus: FakeBus, tmp_path: Path
) -> None:
    clock = ManualClock()
    world = make_world(settings, store, bus, clock=clock)
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    world.provider.resumed_daemon_serves = False
    await world.rpc("machines.resume", {"machineId": m.id})
    settling = asyncio.ensure_future(world.bus.settle())
    await clock.advance(settings.boot_timeout_s - 1)
    assert (await world.machine(m.id)).status is S.RESUMING
    await clock.advance(2.0)
    await asyncio.wait_for(settling, 10)
    got = await world.machine(m.id)
    assert got.status is S.UNRESPONSIVE
    assert got.status_reason == "resumed, but its daemon did not answer within 120s"
    assert not [e for e in world.bus.events if isinstance(e, MachineResumed)]
    assert world.bus.one(MachineUnresponsive, m.id)
    # Its daemon's first heartbeat is a recovery (services/prober/liveness.py): ready then.
    assert await world.store.heartbeats.record({m.id: clock.now()}) == [m.id]
