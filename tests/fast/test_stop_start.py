"""``machines.stop``/``machines.start``, auto-stop and ``maxRunningMachines``: the rules, in
memory (the real stage services on fakeredis and the fake bus). Real daemons, both providers,
the host-side facts and a provisioner SIGKILLed: tests/integration/test_*stop_start.py."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from contracts.bus.events import (
    MachineProcessesEnded as ProcessesEnded,
    MachineStarted,
    MachineStopped as Stopped,
)
from contracts.errors import (
    Conflict,
    Forbidden,
    InvalidParams,
    MachineStopped,
    NeverStarted,
    NotFound,
    ProviderError,
    RunningMachinesLimit,
)
from contracts.status import MachineStatus as S
from controlplane.machines.failures import fail_machine
from controlplane.settings import Settings
from services.prober.autostop import IdleStopper
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_MACHINE, token_of, two_instances

method = pytest.mark.gateway_method


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Wake on access off (``FLEET_WAKE_ON_ACCESS=false``): a call that needs a stopped machine
    is refused at once, as these tests say; with it on (the default): tests/fast/test_wake.py."""
    return msgspec.structs.replace(settings, wake_on_access=False)


@method("machines.stop", "machines.start")
async def test_stop_then_start_goes_through_the_pipeline_again(world: World) -> None:
    m = await world.ready_machine()
    stopping = await world.rpc("machines.stop", {"machineId": m.id})
    assert (stopping["status"], stopping["statusReason"]) == ("stopping", "stopped by request")
    await world.bus.settle()
    assert world.provider.stops == [m.id]
    # Stopped only once the provider's stop returned (every process gone), and said so.
    stopped = await world.machine(m.id)
    assert (stopped.status, stopped.status_reason) == (S.STOPPED, "stopped by request")
    assert [e.machine_id for e in world.bus.events if isinstance(e, ProcessesEnded)] == [m.id]
    calls = len(world.daemons.calls)
    with pytest.raises(MachineStopped) as refused:
        await world.rpc("machines.exec", {"machineId": m.id, "command": ["true"]})
    assert refused.value.code == 1040
    assert refused.value.data is not None
    assert f"fleet machines start {m.id}" in refused.value.data["hint"]
    assert len(world.daemons.calls) == calls  # refused before any daemon call
    # A repeat changes nothing and publishes nothing.
    again = await world.rpc("machines.stop", {"machineId": m.id})
    assert again["status"] == "stopped"
    assert len([e for e in world.bus.events if isinstance(e, Stopped)]) == 1

    starts = len(world.provider.starts)
    started = await world.rpc("machines.start", {"machineId": m.id})
    assert started["status"] == "booting"
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.READY
    assert len(world.provider.starts) == starts + 1  # no warm pool here: a cold start
    again = await world.rpc("machines.start", {"machineId": m.id})  # running: no change
    assert again["status"] == "ready"
    assert len([e for e in world.bus.events if isinstance(e, MachineStarted)]) == 1


@method("machines.start")
async def test_a_start_right_behind_its_stop_waits_for_the_stop(world: World) -> None:
    m = await world.ready_machine()
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.rpc("machines.start", {"machineId": m.id})  # before any handler ran
    await world.bus.settle()
    assert world.provider.stops == [m.id]  # the stop was carried out, then the start
    assert (await world.machine(m.id)).status is S.READY


@method("machines.start")
async def test_a_provisioner_starting_leaves_a_start_behind_its_stop_to_the_stop(
    world: World,
) -> None:
    """A provisioner that starts (a restart) while a machine's start waits behind its stop
    starts nothing of it: the stop's handler ends what runs, then the start's handler starts
    it. Before, the restart started it, the stop's handler then ended that very sandbox, and
    the start's, finding the machine setting up, did nothing: it never came up (the soak)."""
    m = await world.ready_machine()
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.rpc("machines.start", {"machineId": m.id})  # before any handler ran
    starts = len(world.provider.starts)
    assert await world.provisioner.resume() == 0
    assert len(world.provider.starts) == starts
    await world.bus.settle()
    assert world.provider.stops == [m.id]
    assert len(world.provider.starts) == starts + 1
    assert m.id in world.provider.running
    assert (await world.machine(m.id)).status is S.READY
    assert not await world.store.stops.outstanding(m.id)


@method("machines.stop", "machines.start")
async def test_stop_and_start_are_checked(world: World) -> None:
    a, b = await two_instances(world)
    m = await world.ready_machine(a)
    for name in ("machines.stop", "machines.start"):
        with pytest.raises(InvalidParams) as bad:
            await world.rpc(name, {"machineId": "nope"})
        assert bad.value.field == "$.machineId"
        with pytest.raises(NotFound):
            await world.rpc(name, {"machineId": MISSING_MACHINE})
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": m.id}, token_of(b))
    await world.rpc("machines.archive", {"machineId": m.id})
    for name in ("machines.stop", "machines.start"):
        with pytest.raises(Conflict):
            await world.rpc(name, {"machineId": m.id})


@method("instances.setAutoStop", "instances.getAutoStop")
async def test_auto_stop_settings_are_validated_and_scoped(world: World) -> None:
    a, b = await two_instances(world)
    got = await world.rpc("instances.getAutoStop", {"instanceId": a})
    assert got == {"instanceId": a, "idleAfterS": 0, "action": None}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"instanceId": a, "idleAfterS": -1}, "$.idleAfterS"),
        ({"instanceId": a, "idleAfterS": 10**9}, "$.idleAfterS"),
        ({"instanceId": a, "idleAfterS": "900"}, "$.idleAfterS"),
        ({"instanceId": a}, "$.idleAfterS"),
        ({"instanceId": "x", "idleAfterS": 5}, "$.instanceId"),
    ]
    for params, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("instances.setAutoStop", params)
        assert bad.value.field == field, params
    set_ = await world.rpc("instances.setAutoStop", {"instanceId": a, "idleAfterS": 900},
                           token_of(a))  # fmt: skip
    assert set_ == {"instanceId": a, "idleAfterS": 900, "action": None}
    assert await world.rpc("instances.getAutoStop", {"instanceId": a}) == set_
    with pytest.raises(Forbidden):
        await world.rpc("instances.setAutoStop", {"instanceId": b, "idleAfterS": 5}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("instances.getAutoStop", {"instanceId": b}, token_of(a))


async def test_the_idle_stopper_stops_only_the_idle(world: World) -> None:
    a, b = await two_instances(world)
    idle, busy = await world.ready_machine(a), await world.ready_machine(b)
    other = await world.ready_machine()  # auto-stop off for its instance
    for inst in (a, b):
        await world.rpc("instances.setAutoStop", {"instanceId": inst, "idleAfterS": 900})
    stopper = IdleStopper(store=world.store, bus=world.bus, settings=world.settings)
    now = time.time()
    await world.store.stops.record_activity({idle.id: now - 901, busy.id: now - 899,
                                        other.id: now - 10**6})  # fmt: skip
    assert await stopper.sweep() == 1
    await world.bus.settle()
    got = await world.machine(idle.id)
    assert (got.status, got.status_reason) == (S.STOPPED, "idle for 900 s")
    assert (await world.machine(busy.id)).status is S.READY
    assert (await world.machine(other.id)).status is S.READY
    # Activity through the gateway moves the clock: exec counts, a process list does not.
    await world.rpc("machines.exec", {"machineId": busy.id, "command": ["true"]})
    assert await stopper.sweep() == 0
    assert await stopper.sweep() == 0  # stopped ones are not stopped again


@method("instances.setLimits", "machines.start", "machines.create", "machines.rebuild")
async def test_max_running_machines_refuses_a_start_and_a_create(world: World) -> None:
    a, b = await two_instances(world)
    m = await world.ready_machine(a)
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    got = await world.rpc("instances.setLimits", {"instanceId": a, "maxRunningMachines": 0})
    assert (got["maxRunningMachines"], got["own"]) == (0, ["maxRunningMachines"])
    with pytest.raises(RunningMachinesLimit) as refused:
        await world.rpc("machines.start", {"machineId": m.id})
    assert refused.value.code == 1041
    assert refused.value.data == {"limit": 0, "running": 0}
    assert (await world.machine(m.id)).status is S.STOPPED
    # A rebuild would run a new machine: refused too, and the stopped one is left as it was.
    with pytest.raises(RunningMachinesLimit):
        await world.rpc("machines.rebuild", {"instanceId": a})
    assert (await world.store.get_instance(a)).current_machine_id == m.id
    assert (await world.machine(m.id)).status is S.STOPPED
    await world.rpc("instances.setLimits", {"instanceId": b, "maxRunningMachines": 0})
    with pytest.raises(RunningMachinesLimit):
        await world.rpc("machines.create", {"instanceId": b})
    # An instance token may lower it, never raise or remove it.
    with pytest.raises(Forbidden):
        await world.rpc("instances.setLimits", {"instanceId": a}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("instances.setLimits", {"instanceId": a, "maxRunningMachines": 1},
                        token_of(a))  # fmt: skip
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("instances.setLimits", {"instanceId": a, "maxRunningMachines": -1})
    assert bad.value.field == "$.maxRunningMachines"
    await world.rpc("instances.setLimits", {"instanceId": a, "maxRunningMachines": 1})
    await world.rpc("machines.start", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.READY


@method("machines.stop", "machines.start")
async def test_a_repeat_finishes_what_a_dying_gateway_left_undone(world: World) -> None:
    """A gateway that died between the status change and the event left a stopped machine
    running (or a started one down): the caller's retry publishes the event again."""
    m = await world.ready_machine()
    moved = await world.store.transition(m.id, S.STOPPING, "stopped by request")  # no event
    assert moved.moved
    await world.bus.settle()
    assert world.provider.stops == []
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    assert world.provider.stops == [m.id]
    assert (await world.machine(m.id)).status is S.STOPPED

    starts = len(world.provider.starts)
    await world.store.transition(m.id, S.BOOTING, "started by request")  # no event
    await world.bus.settle()
    assert len(world.provider.starts) == starts
    again = await world.rpc("machines.start", {"machineId": m.id})
    assert again["status"] == "booting"
    await world.bus.settle()
    assert len(world.provider.starts) == starts + 1
    assert (await world.machine(m.id)).status is S.READY


@method("machines.start")
async def test_a_start_of_a_machine_booting_after_its_create_publishes_nothing(
    world: World,
) -> None:
    inst = await world.instance()
    world.provider.report_ready = False  # it stays booting
    created = await world.rpc("machines.create", {"instanceId": inst.id})
    await world.bus.settle()
    assert (await world.machine(created["id"])).status is S.BOOTING
    got = await world.rpc("machines.start", {"machineId": created["id"]})
    assert got["status"] == "booting"
    assert not [e for e in world.bus.events if isinstance(e, MachineStarted)]


@method("machines.start")
async def test_a_failed_machine_is_started_again_without_a_rebuild(world: World) -> None:
    """A machine failed at its boot or setup (its daemon late, the platform stopped meanwhile)
    still has its home: a start ends what is left of it first, then starts the same machine,
    which goes through its pipeline to ready."""
    m = await world.ready_machine()
    await fail_machine(world.store, world.bus, m.id, stage="boot",
                       reason="the daemon did not report ready",
                       cause_event_id="e-boot")  # fmt: skip
    assert m.id in world.provider.running  # a failed machine's daemon may still run
    starts = len(world.provider.starts)
    started = await world.rpc("machines.start", {"machineId": m.id})
    assert started["status"] == "booting"
    await world.bus.settle()
    assert world.provider.stops == [m.id]  # what was left of it ended, before its start
    assert len(world.provider.starts) == starts + 1
    assert world.provider.starts[-1][0] == m.id  # the same machine, not a new one
    again = await world.machine(m.id)
    assert (again.status, again.external_id) == (S.READY, m.external_id)
    kinds = [type(e) for e in world.bus.events
             if isinstance(e, Stopped | MachineStarted) and e.machine_id == m.id]  # fmt: skip
    assert kinds == [Stopped, MachineStarted]


@method("machines.start")
async def test_a_failed_machine_its_provider_never_made_needs_a_rebuild(world: World) -> None:
    inst = await world.instance()
    world.provider.fail_start = ProviderError("no capacity left")
    created = await world.rpc("machines.create", {"instanceId": inst.id})
    await world.bus.settle()
    assert (await world.machine(created["id"])).status is S.FAILED
    with pytest.raises(NeverStarted) as refused:
        await world.rpc("machines.start", {"machineId": created["id"]})
    assert refused.value.code == 1042
    assert "machines.rebuild" in refused.value.message
    assert refused.value.data == {"status": "failed"}
    assert (await world.machine(created["id"])).status is S.FAILED  # nothing moved
    assert not [e for e in world.bus.events if isinstance(e, MachineStarted | Stopped)]
