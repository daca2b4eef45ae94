"""Auto-pause (``instances.setAutoStop {action}``) and ``FLEET_PAUSED_STOP_AFTER_S`` on a
manual clock (tests/fakes/clock.py): each rule checked just before and at its time, with the
idle stopper's own loop running and nothing sleeping. On real runsc:
tests/integration/test_gvisor_pause.py."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from contracts.bus.events import MachinePaused, MachinePauseRequested
from contracts.errors import Conflict, InvalidParams
from contracts.status import MachineStatus as S
from controlplane.settings import Settings
from services.gateway.auth.activity import ActivityClock
from services.prober.autostop import IdleStopper
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World
from tests.fast.test_pause import ready_gvisor

method = pytest.mark.gateway_method


def stopper(world: World, clock: ManualClock, **settings: object) -> IdleStopper:
    world.api.access.activity = ActivityClock(world.store, clock=clock)  # gateway activity
    tuned: Settings = msgspec.structs.replace(world.settings,
                                              **{"autostop_tick_s": 1.0, **settings})  # fmt: skip
    return IdleStopper(store=world.store, bus=world.bus, settings=tuned, clock=clock)


async def settled(world: World, clock: ManualClock, seconds: float) -> None:
    await clock.advance(seconds)
    await world.bus.settle()


@method("instances.setAutoStop")
async def test_an_idle_gvisor_machine_is_paused_at_its_time_and_a_namespaces_one_stopped(
    world: World, tmp_path: Path
) -> None:
    a, b = (await world.instance("a")).id, (await world.instance("b")).id
    gv, ns = await ready_gvisor(world, tmp_path, a), await world.ready_machine(b)
    # "pause" asked, but a namespaces machine cannot keep its memory: it is stopped.
    for iid in (a, b):
        await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 120,
                                                  "action": "pause"})  # fmt: skip
    clock = ManualClock()
    async with stopper(world, clock):
        await settled(world, clock, 1.0)  # the first look starts both machines' clocks
        await settled(world, clock, 119.0)  # idle for 119 s: not yet
        assert (await world.machine(gv.id)).status is S.READY
        assert (await world.machine(ns.id)).status is S.READY
        await settled(world, clock, 1.0)  # idle for 120 s
        got = await world.machine(gv.id)
        assert (got.status, got.status_reason) == (S.PAUSED, "idle for 120 s")
        [asked] = world.bus.of(MachinePauseRequested, gv.id)  # the path machines.pause takes
        assert asked.reason == "idle for 120 s"
        assert len(world.bus.of(MachinePaused, gv.id)) == 1
        assert world.provider.pauses == [gv.id]
        got = await world.machine(ns.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "idle for 120 s")
        assert world.bus.of(MachinePauseRequested, ns.id) == []


async def test_without_an_action_gvisor_pauses_and_with_stop_it_stops(
    world: World, tmp_path: Path
) -> None:
    a, b = (await world.instance("a")).id, (await world.instance("b")).id
    default, stop = await ready_gvisor(world, tmp_path, a), await ready_gvisor(world, tmp_path, b)
    await world.rpc("instances.setAutoStop", {"instanceId": a, "idleAfterS": 60})
    await world.rpc("instances.setAutoStop", {"instanceId": b, "idleAfterS": 60,
                                              "action": "stop"})  # fmt: skip
    clock = ManualClock()
    async with stopper(world, clock):
        await settled(world, clock, 1.0)
        await settled(world, clock, 59.0)
        assert {(await world.machine(m.id)).status for m in (default, stop)} == {S.READY}
        await settled(world, clock, 1.0)
        assert (await world.machine(default.id)).status is S.PAUSED
        got = await world.machine(stop.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "idle for 60 s")
    assert world.provider.pauses == [default.id]


async def test_a_machine_paused_past_the_setting_is_stopped_not_before(
    world: World, tmp_path: Path
) -> None:
    iid = (await world.instance("a")).id
    m = await ready_gvisor(world, tmp_path, iid)
    # No auto-stop for its instance: the setting holds for it too.
    by_hand = await ready_gvisor(world, tmp_path, (await world.instance("b")).id)
    await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 60})
    await world.rpc("machines.pause", {"machineId": by_hand.id})
    await world.bus.settle()
    clock = ManualClock()
    async with stopper(world, clock, paused_stop_after_s=300):
        await settled(world, clock, 1.0)  # by_hand seen paused: its count starts
        await settled(world, clock, 60.0)  # m idle for 60 s: paused
        assert (await world.machine(m.id)).status is S.PAUSED
        await settled(world, clock, 1.0)  # the next round sees it paused: its count starts
        await settled(world, clock, 299.0 - 61.0)  # by_hand paused for 299 s
        assert (await world.machine(by_hand.id)).status is S.PAUSED
        await settled(world, clock, 1.0)
        got = await world.machine(by_hand.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "paused for 300 s")
        assert world.provider.stops == [by_hand.id]  # its sandbox's image goes with the stop
        await settled(world, clock, 60.0)  # m paused for 299 s
        assert (await world.machine(m.id)).status is S.PAUSED
        await settled(world, clock, 1.0)
        got = await world.machine(m.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "paused for 300 s")


async def test_a_resumed_machine_counts_its_pause_again_from_its_next_one(
    world: World, tmp_path: Path
) -> None:
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    clock = ManualClock()
    async with stopper(world, clock, paused_stop_after_s=100):
        await settled(world, clock, 1.0)
        await settled(world, clock, 98.0)  # paused for 98 s
        await world.rpc("machines.resume", {"machineId": m.id})
        await settled(world, clock, 1.0)
        assert (await world.machine(m.id)).status is S.READY
        await world.rpc("machines.pause", {"machineId": m.id})
        await world.bus.settle()
        await settled(world, clock, 1.0)  # seen paused again: counts from here
        await settled(world, clock, 99.0)
        assert (await world.machine(m.id)).status is S.PAUSED
        await settled(world, clock, 1.0)
        assert (await world.machine(m.id)).status is S.STOPPED


async def test_zero_never_stops_a_paused_machine(world: World, tmp_path: Path) -> None:
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    clock = ManualClock()
    async with stopper(world, clock, paused_stop_after_s=0, autostop_tick_s=3600.0):
        await settled(world, clock, 10.0 * 24 * 3600)
    assert (await world.machine(m.id)).status is S.PAUSED


async def test_a_refused_pause_is_followed_by_a_stop_the_next_round(
    world: World, tmp_path: Path
) -> None:
    iid = (await world.instance()).id
    m = await ready_gvisor(world, tmp_path, iid)
    await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 60})
    world.provider.fail_pause = Conflict("a process of the machine holds a TCP connection")
    clock = ManualClock()
    async with stopper(world, clock):
        await settled(world, clock, 1.0)
        await settled(world, clock, 60.0)  # paused, refused: ready again, saying so
        got = await world.machine(m.id)
        assert got.status is S.READY
        assert got.status_reason.startswith("pause refused: ")
        await settled(world, clock, 1.0)  # the next round stops it
        got = await world.machine(m.id)
        assert got.status is S.STOPPED
        assert got.status_reason.startswith("idle for 60 s; pause refused: ")
        assert "TCP connection" in got.status_reason
    assert world.provider.pauses == [m.id]  # never asked twice


@method("instances.setAutoStop", "instances.getAutoStop")
async def test_the_action_is_validated_kept_and_forgotten_when_off(world: World) -> None:
    iid = (await world.instance()).id
    bad_actions: list[object] = ["sleep", "", 1, ["pause"], "PAUSE"]
    for action in bad_actions:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 60,
                                                      "action": action})  # fmt: skip
        assert bad.value.field == "$.action", action
    assert await world.rpc("instances.getAutoStop", {"instanceId": iid}) == {
        "instanceId": iid, "idleAfterS": 0, "action": None}  # fmt: skip
    for good in ("pause", "stop", None):
        params = {"instanceId": iid, "idleAfterS": 60, "action": good}
        assert await world.rpc("instances.setAutoStop", params) == params
        assert await world.rpc("instances.getAutoStop", {"instanceId": iid}) == params
    await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 60,
                                              "action": "stop"})  # fmt: skip
    off = await world.rpc("instances.setAutoStop", {"instanceId": iid, "idleAfterS": 0,
                                                    "action": "stop"})  # fmt: skip
    assert off == {"instanceId": iid, "idleAfterS": 0, "action": None}
    assert await world.rpc("instances.getAutoStop", {"instanceId": iid}) == off


class TestPlatformDefault:
    """``FLEET_AUTOPAUSE_IDLE_S`` (900 s by default): the idle gvisor machines of an instance
    that never set auto-stop are paused; nothing else is ever done by the default."""

    DEFAULT_S = Settings().autopause_idle_s

    def test_the_default_is_fifteen_minutes(self) -> None:
        assert self.DEFAULT_S == 900

    async def test_an_idle_gvisor_machine_with_no_rule_is_paused_a_namespaces_one_left(
        self, world: World, tmp_path: Path
    ) -> None:
        a, b = (await world.instance("a")).id, (await world.instance("b")).id
        gv, ns = await ready_gvisor(world, tmp_path, a), await world.ready_machine(b)
        clock = ManualClock()
        async with stopper(world, clock, autostop_tick_s=30.0):
            await settled(world, clock, 30.0)  # the first look starts the clocks
            await settled(world, clock, self.DEFAULT_S - 30.0)  # idle for 870 s: not yet
            assert (await world.machine(gv.id)).status is S.READY
            await settled(world, clock, 30.0)
            got = await world.machine(gv.id)
            assert (got.status, got.status_reason) == (S.PAUSED, f"idle for {self.DEFAULT_S} s")
            [asked] = world.bus.of(MachinePauseRequested, gv.id)  # machines.pause's path
            assert asked.reason == f"idle for {self.DEFAULT_S} s"
            await settled(world, clock, 10.0 * self.DEFAULT_S)
            assert (await world.machine(ns.id)).status is S.READY  # never stopped by default
        assert world.provider.pauses == [gv.id]
        assert world.provider.stops == []

    async def test_an_instances_own_rule_or_its_off_overrides_the_default(
        self, world: World, tmp_path: Path
    ) -> None:
        off, longer = (await world.instance("off")).id, (await world.instance("long")).id
        a, b = await ready_gvisor(world, tmp_path, off), await ready_gvisor(world, tmp_path, longer)
        await world.rpc("instances.setAutoStop", {"instanceId": off, "idleAfterS": 60})
        await world.rpc("instances.setAutoStop", {"instanceId": off, "idleAfterS": 0})
        await world.rpc("instances.setAutoStop", {"instanceId": longer, "idleAfterS": 3000})
        clock = ManualClock()
        async with stopper(world, clock, autostop_tick_s=60.0):
            await settled(world, clock, 60.0)
            await settled(world, clock, 2940.0)  # idle for 2940 s: past the default
            assert {(await world.machine(m.id)).status for m in (a, b)} == {S.READY}
            await settled(world, clock, 60.0)
            assert (await world.machine(b.id)).status is S.PAUSED  # its own 3000 s
            await settled(world, clock, 10.0 * self.DEFAULT_S)
            assert (await world.machine(a.id)).status is S.READY  # off: never

    async def test_a_refused_pause_is_not_followed_by_a_stop_nor_asked_again(
        self, world: World, tmp_path: Path
    ) -> None:
        m = await ready_gvisor(world, tmp_path)
        world.provider.fail_pause = Conflict("the checkpoint failed")
        clock = ManualClock()
        async with stopper(world, clock, autostop_tick_s=60.0):
            await settled(world, clock, 60.0)
            await settled(world, clock, float(self.DEFAULT_S))  # paused, refused
            await settled(world, clock, 10.0 * self.DEFAULT_S)
        got = await world.machine(m.id)
        assert got.status is S.READY
        assert got.status_reason.startswith("pause refused: ")
        assert world.provider.pauses == [m.id]

    async def test_zero_turns_the_default_off(self, world: World, tmp_path: Path) -> None:
        m = await ready_gvisor(world, tmp_path)
        clock = ManualClock()
        async with stopper(world, clock, autopause_idle_s=0, autostop_tick_s=3600.0):
            await settled(world, clock, 7 * 24 * 3600.0)
        assert (await world.machine(m.id)).status is S.READY

    async def test_a_resumed_machine_counts_its_idle_time_from_its_resume(
        self, world: World, tmp_path: Path
    ) -> None:
        m = await ready_gvisor(world, tmp_path)
        clock = ManualClock()
        # Its last activity long before its pause by hand.
        await world.store.stops.record_activity({m.id: clock.now() - 10.0 * self.DEFAULT_S})
        await world.rpc("machines.pause", {"machineId": m.id})
        await world.bus.settle()
        await world.rpc("machines.resume", {"machineId": m.id})
        await world.bus.settle()
        async with stopper(world, clock):
            await settled(world, clock, 1.0)
            assert (await world.machine(m.id)).status is S.READY  # not paused again at once
            # The resume's activity is written at the store's time, which this manual clock
            # only started from: the seconds a loaded host took between them are its margin.
            await settled(world, clock, float(self.DEFAULT_S) + 60.0)
            assert (await world.machine(m.id)).status is S.PAUSED


def test_a_negative_default_stops_the_process_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="FLEET_AUTOPAUSE_IDLE_S"):
        Settings.from_env({"FLEET_AUTOPAUSE_IDLE_S": "-1"})
