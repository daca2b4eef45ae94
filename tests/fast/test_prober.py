"""The prober's rules: probe until healthy -> ready, or fail at stage probe; the boot watchdog;
liveness after ready. And the status table as the stages see it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import cast

import msgspec
import pytest

from contracts.bus.consumers import Durable
from contracts.bus.events import (
    DaemonStatusReported,
    MachineFailed,
    MachineProvisioned,
    MachineReady,
    MachineUnresponsive,
    SetupPushed,
    now,
)
from contracts.bus.subjects import EventKind as K
from contracts.daemon.rpc import HealthParams, WriteFileParams
from contracts.ids import new_event_id
from contracts.models import Machine, Repo
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Permanent
from services.prober.liveness import HeartbeatMonitor
from tests.fakes.clock import TICK, ManualClock
from tests.fakes.daemons import Checkout
from tests.fast.conftest import World


async def setting_up(world: World, repos: list[str] | None = None) -> tuple[Machine, SetupPushed]:
    """A machine the setup pusher is done with, and its (not yet published) setup-pushed."""
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    for status in (S.PROVISIONING, S.BOOTING, S.SETTING_UP):
        await world.store.transition(machine.id, status, status.value, external_id="local:1")
    m = world.daemons.boot(machine.id)
    env = (await m.write_file(WriteFileParams(path="~/.fleet/.env", content="A='1'\n"), None)).path
    for path in repos or []:
        m.checkouts[m.path(path)] = Checkout(url=f"https://x/{path}.git", branch="main")
    pushed = SetupPushed(event_id=new_event_id(), machine_id=machine.id, env_path=env,
                         env_bytes=6, repo_paths=repos or [])  # fmt: skip
    return machine, pushed


async def test_healthy_at_the_first_probe_is_ready(world: World) -> None:
    machine, pushed = await setting_up(world, repos=["src/app"])
    await world.bus.publish(pushed)
    await world.bus.settle()

    after = await world.machine(machine.id)
    assert (after.status, after.status_reason) == (S.READY, "all readiness checks passed")
    assert world.bus.one(MachineReady, machine.id)
    m = world.daemons[machine.id]
    # The .env is checked by the health call itself: no command spawned on the machine for it.
    assert [
        cast(HealthParams, c.params).files
        for c in world.daemons.calls_of("daemon.health", machine.id)
    ] == [[pushed.env_path]]
    assert not m.ran("test", "-f")
    assert m.ran("git", "-C", "src/app", "rev-parse", "--git-dir")


async def test_a_daemon_from_before_health_files_is_probed_with_test_f(world: World) -> None:
    machine, pushed = await setting_up(world, repos=["src/app"])
    m = world.daemons[machine.id]
    m.health_without_files = True
    await world.bus.publish(pushed)
    await world.bus.settle()
    assert (await world.machine(machine.id)).status is S.READY
    assert m.ran("test", "-f", pushed.env_path)
    assert m.ran("git", "-C", "src/app", "rev-parse", "--git-dir")


async def test_a_missing_env_fails_at_stage_probe_for_old_and_new_daemons(world: World) -> None:
    world.prober.probe.settings = msgspec.structs.replace(world.settings, probe_timeout_s=0.0)
    for old in (False, True):
        machine, pushed = await setting_up(world)
        world.daemons[machine.id].health_without_files = old
        world.daemons[machine.id].files.clear()
        await world.bus.publish(pushed)
        await world.bus.settle()
        failed = world.bus.one(MachineFailed, machine.id)
        assert failed.reason == "not healthy after 0s: .env missing on the machine", old


async def test_probes_until_healthy(world: World) -> None:
    machine, pushed = await setting_up(world)
    world.daemons[machine.id].unhealthy_for = 3
    await world.bus.publish(pushed)
    await world.bus.settle()
    assert (await world.machine(machine.id)).status is S.READY
    assert len(world.daemons.calls_of("daemon.health", machine.id)) == 4


async def test_a_missing_checkout_times_out_and_fails_at_stage_probe(world: World) -> None:
    world.prober.probe.settings = msgspec.structs.replace(world.settings, probe_timeout_s=0.0)
    machine, pushed = await setting_up(world)
    pushed.repo_paths = ["src/gone"]
    await world.bus.publish(pushed)
    await world.bus.settle()

    failed = world.bus.one(MachineFailed, machine.id)
    assert (failed.stage, failed.reason) == ("probe", "not healthy after 0s: checkout src/gone "
                                             "missing on the machine")  # fmt: skip
    assert world.bus.outcomes(Durable.PROBER) == ["gave_up"]
    assert (await world.machine(machine.id)).status_reason.startswith("probe failed: ")


class TestOnItsClock:
    """The probe's delay, deadline and interval on a manual clock, each just before and at its
    time (the handler run directly: the bus would retry a failure)."""

    @staticmethod
    def timed(world: World, clock: ManualClock, **times: float) -> None:
        world.prober.probe.clock = clock
        world.prober.probe.settings = msgspec.structs.replace(world.settings, **times)

    async def test_a_machine_never_healthy_fails_at_its_deadline_not_before(
        self, world: World
    ) -> None:
        clock = ManualClock()
        self.timed(world, clock, probe_timeout_s=10.0, probe_interval_s=1.0)
        machine, pushed = await setting_up(world)
        world.daemons[machine.id].unhealthy_for = 1000
        probing = asyncio.ensure_future(world.prober.probe.on_setup_pushed(pushed))
        await clock.advance(10.0 - TICK)
        assert not probing.done()
        health = world.daemons.calls_of("daemon.health", machine.id)
        assert len(health) == 10  # at 0, 1, ... 9 s: one a probe interval
        await clock.advance(TICK)
        with pytest.raises(Permanent, match="not healthy after 10s"):
            await asyncio.wait_for(probing, 10)

    async def test_the_first_probe_waits_the_probe_delay(self, world: World) -> None:
        clock = ManualClock()
        self.timed(world, clock, probe_delay_s=5.0)
        machine, pushed = await setting_up(world)
        probing = asyncio.ensure_future(world.prober.probe.on_setup_pushed(pushed))
        await clock.advance(5.0 - TICK)
        assert world.daemons.calls_of("daemon.health", machine.id) == []
        await clock.advance(TICK)
        await asyncio.wait_for(probing, 10)
        assert (await world.machine(machine.id)).status is S.READY


async def test_an_unreachable_daemon_is_a_probe_problem_not_a_crash(world: World) -> None:
    world.prober.probe.settings = msgspec.structs.replace(world.settings, probe_timeout_s=0.0)
    machine, pushed = await setting_up(world)
    world.daemons[machine.id].mode = "timeout"
    await world.bus.publish(pushed)
    await world.bus.settle()
    failed = world.bus.one(MachineFailed, machine.id)
    assert failed.reason.startswith("not healthy after 0s: daemon health check failed: machine ")


async def test_a_redelivered_setup_pushed_after_ready_announces_again_deduplicated(
    world: World,
) -> None:
    _machine, pushed = await setting_up(world)
    await world.bus.publish(pushed)
    await world.bus.settle()
    probes = len(world.daemons.calls)
    await world.bus.redeliver(pushed)
    await world.bus.settle()
    assert len(world.daemons.calls) == probes  # not probed again
    assert world.bus.duplicates == 1
    assert len(world.bus.of(MachineReady)) == 1


async def test_setup_pushed_for_a_failed_machine_is_skipped(world: World) -> None:
    machine, pushed = await setting_up(world)
    await world.store.transition(machine.id, S.FAILED, "setup failed: elsewhere")
    await world.bus.publish(pushed)
    await world.bus.settle()
    assert world.daemons.calls_of("daemon.health") == []
    assert (await world.machine(machine.id)).status is S.FAILED


# --- the boot watchdog (its deadline's rules: tests/fast/test_boot_deadline.py) ----------------
def provisioned(machine_id: str, age_s: float = 0.0) -> MachineProvisioned:
    return MachineProvisioned(event_id=new_event_id(), machine_id=machine_id, provider="local",
                              external_id="local:1",
                              occurred_at=now() - timedelta(seconds=age_s))  # fmt: skip


async def booting(world: World) -> Machine:
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    await world.store.transition(machine.id, S.BOOTING, "booting", external_id="local:1")
    return machine


async def test_watchdog_waits_while_the_daemon_boots(world: World) -> None:
    machine = await booting(world)
    await world.bus.publish(provisioned(machine.id))
    await world.bus.settle()
    assert [d.durable for d in world.bus.deferred] == [Durable.PROBER_BOOT]
    assert (await world.machine(machine.id)).status is S.BOOTING


async def test_watchdog_lets_a_machine_whose_daemon_reports_in_time_be(world: World) -> None:
    machine = await booting(world)
    world.daemons.boot(machine.id)
    await world.bus.publish(provisioned(machine.id))
    await world.bus.settle()
    assert world.bus.outcomes(Durable.PROBER_BOOT)[-1] == "deferred"

    await world.bus.publish(DaemonStatusReported(
        event_id=new_event_id(), machine_id=machine.id, status="ready", version="0.1.0",
        boot_id=new_event_id()))  # fmt: skip
    await world.bus.settle()
    assert world.bus.outcomes(Durable.PROBER_BOOT)[-1] == "ok"
    assert world.bus.deferred == []
    assert (await world.machine(machine.id)).status is S.READY
    assert world.bus.of(MachineFailed) == []


async def test_watchdog_of_the_whole_pipeline_is_done_once_setup_is_pushed(world: World) -> None:
    await world.ready_machine()
    # Watched through its setup (a daemon gone then brings it back to booting), no longer.
    assert world.bus.outcomes(Durable.PROBER_BOOT)[-1] == "ok"
    assert world.bus.deferred == []


# --- the status table, as the stages see it ---------------------------------------------------
async def test_the_whole_pipeline_in_order(world: World) -> None:
    inst = await world.instance()
    await world.store.add_repo(inst.id, Repo(url="https://x/app.git", branch="main", path="app"))
    machine = await world.ready_machine(inst.id)
    assert world.bus.kinds(machine.id) == [K.CREATED, K.DAEMON_STATUS_REPORTED, K.PROVISIONED,
                                           K.SETUP_PUSHED, K.READY]  # fmt: skip


async def test_late_events_never_move_a_ready_machine_backwards(world: World) -> None:
    machine = await world.ready_machine()
    for event in list(world.bus.events):
        await world.bus.redeliver(event)
    await world.bus.publish(DaemonStatusReported(
        event_id=new_event_id(), machine_id=machine.id, status="ready", version="0.1.0",
        boot_id=new_event_id()))  # fmt: skip
    await world.bus.settle()
    assert (await world.machine(machine.id)).status is S.READY
    assert len(world.bus.of(SetupPushed)) == 1
    assert world.bus.of(MachineFailed) == []


async def test_an_archived_machine_is_never_failed_by_a_late_stage(world: World) -> None:
    machine, pushed = await setting_up(world)
    await world.store.transition(machine.id, S.ARCHIVING, "archived by request")
    await world.prober.probe.give_up(pushed, "too late")
    assert (await world.machine(machine.id)).status is S.ARCHIVING
    assert world.bus.of(MachineFailed) == []


# --- liveness ---------------------------------------------------------------------------------
async def test_missed_heartbeats_make_a_ready_machine_unresponsive_and_a_beat_recovers_it(
    world: World,
) -> None:
    machine = await world.ready_machine()
    monitor = HeartbeatMonitor(store=world.store, bus=world.bus, settings=world.settings)
    await world.store.heartbeats.record({machine.id: time.time() - monitor.window_s - 1})
    await monitor.sweep()
    unresponsive = world.bus.one(MachineUnresponsive, machine.id)
    assert unresponsive.reason.startswith("no heartbeat for ")
    assert (await world.machine(machine.id)).status is S.UNRESPONSIVE

    async with monitor:  # subscribes on the (fake) NATS connection
        await world.bus.fake_nc.publish(f"machine.heartbeat.{machine.id}", b"{}")
    assert (await world.machine(machine.id)).status is S.READY
    assert len(world.bus.of(MachineReady, machine.id)) == 2
