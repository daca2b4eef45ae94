"""The time-dependent rules on a manual clock (tests/fakes/clock.py): auto-stop's idle time,
heartbeat expiry and a token's expiry, each checked just before and at its time, with the
rule's own loop running and nothing sleeping. The real wiring's tests are in
tests/integration (test_stop_start, test_liveness)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from contracts.bus.events import MachineReady, MachineUnresponsive
from contracts.people import ALL_SCOPES
from contracts.status import MachineStatus as S
from controlplane.security.tokens import TokenStore, is_live
from services.gateway.auth.activity import ActivityClock
from services.prober.autostop import IdleStopper
from services.prober.liveness import HeartbeatMonitor
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World
from tests.fast.test_gateway import two_instances


async def test_auto_stop_stops_a_machine_idle_for_its_time_not_before_and_spares_the_busy(
    world: World,
) -> None:
    clock = ManualClock()
    world.api.access.activity = ActivityClock(world.store, clock=clock)  # gateway activity
    settings = msgspec.structs.replace(world.settings, autostop_tick_s=1.0)
    a, b = await two_instances(world)
    idle, busy = await world.ready_machine(a), await world.ready_machine(b)
    other = await world.ready_machine()  # auto-stop off for its instance
    for inst in (a, b):
        await world.rpc("instances.setAutoStop", {"instanceId": inst, "idleAfterS": 120})
    async with IdleStopper(store=world.store, bus=world.bus, settings=settings, clock=clock):
        await clock.advance(1.0)  # the first look starts both machines' clocks
        await clock.advance(60.0)
        await world.rpc("machines.exec", {"machineId": busy.id, "command": ["true"]})
        await clock.advance(59.0)  # idle for 119 s: not yet
        await world.bus.settle()
        assert (await world.machine(idle.id)).status is S.READY
        await clock.advance(1.0)  # idle for 120 s
        await world.bus.settle()
        got = await world.machine(idle.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "idle for 120 s")
        assert (await world.machine(busy.id)).status is S.READY  # active 60 s ago
        await clock.advance(59.0)
        await world.bus.settle()
        assert (await world.machine(busy.id)).status is S.READY
        await clock.advance(1.0)  # left alone, the busy one goes too
        await world.bus.settle()
        got = await world.machine(busy.id)
        assert (got.status, got.status_reason) == (S.STOPPED, "idle for 120 s")
    assert (await world.machine(other.id)).status is S.READY


async def test_a_machine_is_unresponsive_after_its_missed_beats_and_ready_on_its_next_beat(
    world: World,
) -> None:
    clock = ManualClock()
    machine = await world.ready_machine()
    beat = f"machine.heartbeat.{machine.id}"
    window = world.settings.heartbeat_s * world.settings.missed_heartbeats  # the rule's
    monitor = HeartbeatMonitor(store=world.store, bus=world.bus, settings=world.settings,
                               clock=clock)  # fmt: skip
    async with monitor:
        await world.bus.fake_nc.publish(beat, b"{}")  # its last beat, at the start
        await clock.advance(window - monitor.tick_s)  # a round before the window
        assert (await world.machine(machine.id)).status is S.READY
        assert world.bus.of(MachineUnresponsive) == []
        await clock.advance(monitor.tick_s)  # the window's worth of beats missed
        got = await world.machine(machine.id)
        assert got.status is S.UNRESPONSIVE
        unresponsive = world.bus.one(MachineUnresponsive, machine.id)
        assert unresponsive.reason == f"no heartbeat for {window:.0f}s"
        assert unresponsive.last_heartbeat_at == datetime.fromtimestamp(clock.now() - window, UTC)
        await world.bus.fake_nc.publish(beat, b"{}")  # back: ready at the next flush
        await clock.advance(monitor.tick_s)
        assert (await world.machine(machine.id)).status is S.READY
        assert len(world.bus.of(MachineReady, machine.id)) == 2
        # Beating every heartbeat, it stays ready however long.
        for _ in range(20):
            await world.bus.fake_nc.publish(beat, b"{}")
            await clock.advance(world.settings.heartbeat_s)
        assert (await world.machine(machine.id)).status is S.READY
        assert len(world.bus.of(MachineUnresponsive, machine.id)) == 1


async def test_a_token_expires_at_its_expiry_of_the_clock(world: World) -> None:
    clock = ManualClock()
    tokens = TokenStore(world.store, clock)
    expires_at = datetime.fromtimestamp(clock.now() + 60, UTC)
    token, secret = await tokens.create("ci", scopes=ALL_SCOPES, instance_ids=None,
                                        user_id=None, expires_at=expires_at)  # fmt: skip
    assert token.created_at == datetime.fromtimestamp(clock.now(), UTC)
    await clock.advance(59.0)
    found = await tokens.resolve(secret)
    assert found is not None
    assert found.token.id == token.id
    await clock.advance(1.0)
    assert await tokens.resolve(secret) is None  # at its expiry
    assert not is_live(token, clock)
    assert (await tokens.identify(secret)) is not None  # still named, as an expired token
