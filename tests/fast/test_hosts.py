"""Hosts (docs/hosts.md): ``hosts.list``, a host's room for new machines, and the placement
watchdog that fails a create no host with room took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from contracts.bus.events import (
    MachineArchived,
    MachineCreated,
    MachineFailed,
    MachineLost,
    MachineStopped,
    MachineUnresponsive,
    now,
)
from contracts.errors import Forbidden, HostFull, InvalidParams, NotFound
from contracts.host.rpc import HostMachineParams, InstallCodeParams
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Retry
from controlplane.settings import Settings
from controlplane.store import F_HOST_ID
from services.gateway.auth import Caller
from services.prober.host_loss import HostLossMonitor
from services.prober.liveness import HeartbeatMonitor
from services.provisioner.host import HostHeartbeat, memory_low, room_left
from services.provisioner.host_rpc_server import HostMethods
from services.provisioner.service import provisioner
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World

method = pytest.mark.gateway_method
HOST = "host-a"


def room(world: World) -> Callable[[frozenset[str]], Awaitable[int | None]]:
    """The provisioner's capacity gate of machine.created."""
    return world.provisioner.create_archive.room


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """This world's provisioner is host-a, with room for two machines."""
    return msgspec.structs.replace(
        settings, host_id=HOST, host_capacity=2, placement_timeout_s=5.0, host_lost_after_s=30.0
    )


async def hosts(world: World) -> dict[str, dict[str, object]]:
    listed = await world.rpc("hosts.list")
    return {h["hostId"]: h for h in listed["hosts"]}


@method("hosts.list")
async def test_a_host_shows_its_capacity_machines_and_heartbeat(world: World) -> None:
    async with HostHeartbeat(world.store, world.settings):
        assert (await hosts(world))[HOST] | {"lastHeartbeat": None} == {
            "hostId": HOST, "capacity": 2, "running": 0, "stopped": 0,
            "lastHeartbeat": None, "state": "active", "memoryLow": False,
        }  # fmt: skip
        first = await world.ready_machine()
        second = await world.ready_machine()
        assert first.host_id == second.host_id == HOST
        await world.rpc("machines.stop", {"machineId": first.id})
        await world.bus.settle()
        got = (await hosts(world))[HOST]
        assert (got["running"], got["stopped"]) == (1, 1)
        await world.rpc("machines.archive", {"machineId": second.id})
        await world.bus.settle()
        got = (await hosts(world))[HOST]
        assert (got["running"], got["stopped"]) == (0, 1)


@method("hosts.list")
async def test_a_host_without_a_heartbeat_for_lost_after_is_lost(world: World) -> None:
    await world.store.hosts.beat("gone", 0, time.time() - 31)
    await world.store.hosts.beat("here", 0, time.time())
    listed = await hosts(world)
    assert (listed["gone"]["state"], listed["here"]["state"]) == ("lost", "active")
    assert listed["here"]["capacity"] is None  # 0: no limit


async def test_a_host_beats_at_entry_and_every_heartbeat_interval_of_its_clock(
    world: World,
) -> None:
    clock = ManualClock()
    every = world.settings.host_heartbeat_s  # FLEET_HOST_HEARTBEAT_S, on the manual clock

    async def last_beat() -> float:
        record = await world.store.hosts.record(HOST)
        assert record is not None
        return record.last_beat

    async with HostHeartbeat(world.store, world.settings, clock):
        began = clock.now()
        assert await last_beat() == began
        await clock.advance(every - TICK)
        assert await last_beat() == began
        await clock.advance(TICK)
        assert await last_beat() == began + every


@method("hosts.list")
async def test_only_the_admin_lists_hosts(world: World) -> None:
    inst = await world.instance()
    with pytest.raises(Forbidden):
        await world.rpc("hosts.list", caller=Caller("t", admin=False, instance_id=inst.id))


async def test_room_counts_running_machines_and_the_creates_in_hand(world: World) -> None:
    assert await room(world)(frozenset()) == 2
    m = await world.ready_machine()
    assert await room(world)(frozenset()) == 1
    assert await room(world)(frozenset({m.id})) == 1  # held and running: once
    assert await room(world)(frozenset({m.id, "m-other"})) == 0
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    assert await room(world)(frozenset()) == 2  # a stopped machine runs nothing


@method("hosts.list")
async def test_a_failed_machine_runs_on_its_host_until_it_is_archived(world: World) -> None:
    """A machine that failed after its host started it keeps running there (its daemon answers:
    that is when one looks inside), so the host counts it as running, and has no room for it,
    until it is archived."""
    async with HostHeartbeat(world.store, world.settings):
        ready = await world.ready_machine()
        failed = await world.ready_machine()
        await world.store.transition(failed.id, S.FAILED, "probe failed: no answer")
        got = (await hosts(world))[HOST]
        assert (got["running"], got["stopped"]) == (2, 0)
        assert await room(world)(frozenset()) == 0
        await world.rpc("machines.archive", {"machineId": failed.id})
        await world.bus.settle()
        got = (await hosts(world))[HOST]
        assert (got["running"], got["stopped"]) == (1, 0)
        assert await room(world)(frozenset({ready.id})) == 1


async def test_room_is_unlimited_without_a_capacity(world: World) -> None:
    world.provisioner.create_archive.settings = msgspec.structs.replace(
        world.settings, host_capacity=0
    )
    assert await room(world)(frozenset({"m-1", "m-2", "m-3"})) is None


async def untaken(world: World, age_s: float) -> MachineCreated:
    """A create no provisioner took (never published), ``age_s`` old."""
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    return MachineCreated(
        event_id=new_event_id(), machine_id=machine.id, instance_id=inst.id, provider="local",
        occurred_at=now() - timedelta(seconds=age_s),
    )  # fmt: skip


async def test_an_untaken_create_fails_once_no_host_has_room(world: World) -> None:
    await world.store.hosts.beat(HOST, 1, time.time())  # announced with room for one...
    await world.ready_machine()  # ...which it took
    await world.store.hosts.beat("lost", 3, time.time() - 60)  # room, but no heartbeat
    event = await untaken(world, age_s=1.0)
    with pytest.raises(Retry):  # within the timeout: waits
        await world.prober.placement.on_created(event)
    event = await untaken(world, age_s=6.0)
    await world.prober.placement.on_created(event)
    machine = await world.machine(event.machine_id)
    assert machine.status is S.FAILED
    assert machine.status_reason.startswith("placement failed: no host with capacity took it")
    [failed] = world.bus.of(MachineFailed, event.machine_id)
    assert failed.stage == "placement"


async def test_an_untaken_create_fails_at_its_placement_timeout_of_the_clock(
    world: World,
) -> None:
    clock = ManualClock()
    world.prober.placement.clock = clock
    await world.store.hosts.beat(HOST, 1, time.time())  # announced with room for one...
    await world.ready_machine()  # ...which it took
    event = await untaken(world, age_s=0.0)
    event.occurred_at = datetime.fromtimestamp(clock.now(), UTC)
    timeout = world.settings.placement_timeout_s
    await clock.advance(timeout - TICK)
    with pytest.raises(Retry) as later:
        await world.prober.placement.on_created(event)
    assert later.value.delay_s == TICK  # looked at again at the timeout
    await clock.advance(TICK)
    await world.prober.placement.on_created(event)
    assert (await world.machine(event.machine_id)).status is S.FAILED


async def test_an_untaken_create_waits_while_a_host_has_room(world: World) -> None:
    await world.store.hosts.beat("roomy", 3, time.time())
    event = await untaken(world, age_s=6.0)
    with pytest.raises(Retry):
        await world.prober.placement.on_created(event)
    assert (await world.machine(event.machine_id)).status is S.CREATED


async def test_a_create_taken_meanwhile_is_not_failed(world: World) -> None:
    event = await untaken(world, age_s=6.0)
    await world.store.transition(event.machine_id, S.PROVISIONING, "taken")
    await world.prober.placement.on_created(event)  # nothing to watch
    assert await world.store.hosts.fail_unplaced(event.machine_id, "late") is False
    assert (await world.machine(event.machine_id)).status is S.PROVISIONING


@method("hosts.drain")
async def test_a_drained_host_is_listed_draining_and_has_no_room(world: World) -> None:
    heartbeat = HostHeartbeat(world.store, world.settings)
    world.provisioner.create_archive.heartbeat = heartbeat
    async with heartbeat:
        drained = await world.rpc("hosts.drain", {"hostId": HOST})
        assert (drained["hostId"], drained["state"]) == (HOST, "draining")
        # At once, not at its next heartbeat: the flag is read from the store at each fetch.
        assert await room(world)(frozenset()) == 0
        event = await untaken(world, age_s=6.0)
        await world.prober.placement.on_created(
            event
        )  # a drained host has no room: the create fails
        assert (await world.machine(event.machine_id)).status is S.FAILED

        back = await world.rpc("hosts.drain", {"hostId": HOST, "draining": False})
        assert back["state"] == "active"
        assert await room(world)(frozenset()) == 2


@method("hosts.drain")
async def test_only_the_admin_drains_a_host_that_exists(world: World) -> None:
    with pytest.raises(NotFound):
        await world.rpc("hosts.drain", {"hostId": "nowhere"})
    await world.store.hosts.beat(HOST, 2, time.time())
    inst = await world.instance()
    with pytest.raises(Forbidden):
        await world.rpc("hosts.drain", {"hostId": HOST},
                        caller=Caller("t", admin=False, instance_id=inst.id))  # fmt: skip
    assert (await hosts(world))[HOST]["state"] == "active"


async def test_another_hosts_provisioner_leaves_a_machine_alone(world: World) -> None:
    """Archive, stop and start reach every host's durable; only the machine's host acts."""
    m = await world.ready_machine()
    elsewhere = msgspec.structs.replace(world.settings, host_id="host-b")
    providers = {world.provider.name: world.provider}
    other = provisioner(
        store=world.store, bus=world.bus, box=world.box, providers=providers, settings=elsewhere
    )
    await world.rpc("machines.stop", {"machineId": m.id})
    [stopped] = world.bus.of(MachineStopped, m.id)
    await other.stop_start.on_stopped(stopped)  # not its machine: nothing done
    assert world.provider.stops == []
    await world.bus.settle()  # the machine's own host carries it out
    assert world.provider.stops == [m.id]

    await world.rpc("machines.archive", {"machineId": m.id})
    [archived] = world.bus.of(MachineArchived, m.id)
    await other.create_archive.on_archived(archived)
    assert m.id not in world.provider.removes
    assert (await world.store.machine_access(m.id)).revoked  # that, any host does at once
    await world.bus.settle()
    assert m.id in world.provider.removes


async def test_a_machine_of_a_lost_host_goes_unresponsive_naming_its_host(world: World) -> None:
    machine = await world.ready_machine()
    monitor = HeartbeatMonitor(store=world.store, bus=world.bus, settings=world.settings)
    await world.store.hosts.beat(HOST, 2, time.time() - 40)  # lost after 30 s
    await world.store.heartbeats.record({machine.id: time.time() - monitor.window_s - 1})
    await monitor.sweep()
    unresponsive = world.bus.one(MachineUnresponsive, machine.id)
    assert unresponsive.reason.startswith("no heartbeat for ")
    assert f"(its host {HOST} is lost: no heartbeat from it for " in unresponsive.reason
    assert HOST in (await world.machine(machine.id)).status_reason


async def test_a_lost_hosts_machines_go_lost_then_ready_when_their_beats_resume(
    world: World,
) -> None:
    gone, kept, beating = [await world.ready_machine() for _ in range(3)]
    await world.store.redis.hset(world.store.keys.k_machine(kept.id), F_HOST_ID, "host-b")
    await world.store.hosts.took("host-b", kept.id)
    lost = HostLossMonitor(store=world.store, bus=world.bus, settings=world.settings)
    monitor = HeartbeatMonitor(store=world.store, bus=world.bus, settings=world.settings)
    silent = time.time() - monitor.window_s - 1
    await world.store.heartbeats.record({gone.id: silent, kept.id: silent, beating.id: time.time()})
    await world.store.hosts.beat(HOST, 2, time.time() - 10)  # silent, not yet lost
    await world.store.hosts.beat("host-b", 2, time.time())
    await monitor.sweep()  # their own beats stopped: unresponsive first
    assert (await world.machine(gone.id)).status is S.UNRESPONSIVE
    assert await lost.sweep() == 0
    await world.store.hosts.beat(HOST, 2, time.time() - 31)
    assert await lost.sweep() == 1
    event = world.bus.one(MachineLost, gone.id)
    assert event.host_id == HOST
    assert event.reason.startswith(f"its host {HOST} is lost: no heartbeat from it for ")
    got = await world.machine(gone.id)
    assert (got.status, got.status_reason) == (S.LOST, event.reason)
    assert (await world.machine(kept.id)).status is S.UNRESPONSIVE  # its host heartbeats
    assert (await world.machine(beating.id)).status is S.READY  # reachable: host or no host
    assert await lost.sweep() == 0  # marked once
    # The host is back: the machine's first heartbeat makes it ready again.
    await world.store.hosts.beat(HOST, 2, time.time())
    monitor._beats[gone.id] = time.time()  # as its heartbeat subscription records it
    await monitor.flush()
    assert (await world.machine(gone.id)).status is S.READY
    # And a lost machine may be rebuilt: nothing waits for its host.
    await world.store.heartbeats.record({gone.id: silent})
    await monitor.sweep()
    await world.store.hosts.beat(HOST, 2, time.time() - 31)
    assert await lost.sweep() == 1
    rebuilt = await world.rpc("machines.rebuild", {"instanceId": gone.instance_id})
    # Archiving until its host's provisioner has removed its files: its host is lost.
    assert (await world.machine(gone.id)).status is S.ARCHIVING
    assert rebuilt["id"] != gone.id


async def test_a_host_restarts_only_its_own_machines(world: World) -> None:
    """Routed by the machine's host id; a host asked about another host's machine refuses."""
    machine = await world.ready_machine()
    providers = {world.provider.name: world.provider}
    other_host = msgspec.structs.replace(world.settings, host_id="host-b")
    elsewhere = HostMethods(store=world.store, settings=other_host, providers=providers)
    with pytest.raises(NotFound, match=f"runs on host {HOST}, not here"):
        await elsewhere.restart_daemon(HostMachineParams(machine_id=machine.id), None)
    with pytest.raises(NotFound):
        await elsewhere.install_code(
            InstallCodeParams(machine_id=machine.id, target_ref="abc"), None
        )
    assert world.provider.restarts == []
    own = HostMethods(store=world.store, settings=world.settings, providers=providers)
    answer = await own.restart_daemon(HostMachineParams(machine_id=machine.id), None)
    assert (answer.restarted, world.provider.restarts) == (True, [machine.id])


@method("hosts.drain")
async def test_drain_with_rebuild_moves_the_hosts_current_machines(world: World) -> None:
    first, second = await world.ready_machine(), await world.ready_machine()
    await world.store.hosts.beat(HOST, 2, time.time())
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("hosts.drain", {"hostId": HOST, "draining": False, "rebuild": True})
    assert bad.value.field == "$.rebuild"
    await world.rpc("instances.setLimits", {"instanceId": second.instance_id,
                                            "maxRunningMachines": 0})  # fmt: skip
    got = await world.rpc("hosts.drain", {"hostId": HOST, "rebuild": True})
    assert got["state"] == "draining"
    [moved] = got["rebuilt"]
    assert moved["machineId"] == first.id
    assert [(f["machineId"], f["code"]) for f in got["notRebuilt"]] == [(second.id, 1041)]
    assert (await world.machine(first.id)).status is S.ARCHIVING
    assert (await world.store.get_instance(first.instance_id)).current_machine_id == moved[
        "replacedBy"
    ]
    # This world has one host, and it is drained: the replacement waits for a host with room.
    assert (await world.machine(moved["replacedBy"])).status is S.CREATED


async def test_a_host_below_its_memory_floor_takes_no_machine(world: World) -> None:
    low = msgspec.structs.replace(world.settings, host_min_available_mb=1024)
    assert memory_low(1024, lambda: 1023.0)
    assert not memory_low(1024, lambda: 1024.0)
    assert not memory_low(0, lambda: 1.0)  # off
    assert not memory_low(1024, lambda: None)  # unknown: not a reason to refuse
    assert await room_left(world.store, low, frozenset(), available_mb=lambda: 512.0) == 0
    assert await room_left(world.store, low, frozenset(), available_mb=lambda: 4096.0) == 2
    # Its heartbeat says so: hosts.list shows it, and the placement watchdog counts no room.
    await world.store.hosts.beat(HOST, 2, time.time(), memory_low=True)
    listed = (await hosts(world))[HOST]
    assert (listed["state"], listed["memoryLow"]) == ("active", True)
    event = await untaken(world, age_s=6.0)
    await world.prober.placement.on_created(event)
    failed = await world.machine(event.machine_id)
    assert failed.status is S.FAILED
    assert f"{HOST} active memory-low 0/2" in failed.status_reason


@method("machines.start")
async def test_a_start_past_its_hosts_capacity_or_memory_floor_is_refused(world: World) -> None:
    async with HostHeartbeat(world.store, world.settings):
        first = await world.ready_machine()
        await world.rpc("machines.stop", {"machineId": first.id})
        await world.bus.settle()
        second = await world.ready_machine()
        third = await world.ready_machine()  # the stopped one's place: the host is full
        with pytest.raises(HostFull) as refused:
            await world.rpc("machines.start", {"machineId": first.id})
        assert refused.value.code == 1048
        assert refused.value.data == {
            "hostId": HOST, "capacity": 2, "running": 2, "memoryLow": False,
        }  # fmt: skip
        assert (await world.machine(first.id)).status is S.STOPPED
        await world.rpc("machines.archive", {"machineId": third.id})
        await world.bus.settle()
        # Room again, but the host is below its memory floor at its last beat.
        await world.store.hosts.beat(HOST, 2, time.time(), memory_low=True)
        with pytest.raises(HostFull) as low:
            await world.rpc("machines.start", {"machineId": first.id})
        assert low.value.data is not None
        assert low.value.data["memoryLow"] is True
        await world.store.hosts.beat(HOST, 2, time.time())
        started = await world.rpc("machines.start", {"machineId": first.id})
        assert started["status"] == "booting"
        assert second.host_id == HOST


@method("machines.start")
async def test_two_starts_at_once_never_both_take_the_hosts_last_place(world: World) -> None:
    async with HostHeartbeat(world.store, world.settings):
        first, second = await world.ready_machine(), await world.ready_machine()
        for m in (first, second):
            await world.rpc("machines.stop", {"machineId": m.id})
        await world.bus.settle()
        await world.ready_machine()  # one place of two left
        got = await asyncio.gather(
            *(world.rpc("machines.start", {"machineId": m.id}) for m in (first, second)),
            return_exceptions=True,
        )
        refused = [g for g in got if isinstance(g, HostFull)]
        started = [g for g in got if isinstance(g, dict) and g["status"] == "booting"]
        assert (len(refused), len(started)) == (1, 1), got


async def _lose(world: World, machine_id: str, silent_s: float) -> HostLossMonitor:
    """``machine_id``'s own beats stop, then its host's for ``silent_s``."""
    monitor = HeartbeatMonitor(store=world.store, bus=world.bus, settings=world.settings)
    await world.store.heartbeats.record({machine_id: time.time() - monitor.window_s - 1})
    await monitor.sweep()
    await world.store.hosts.beat(HOST, 2, time.time() - silent_s)
    return HostLossMonitor(store=world.store, bus=world.bus, settings=world.settings)


async def test_a_host_lost_for_the_rebuild_time_has_its_machines_rebuilt_once(
    world: World,
) -> None:
    world.settings = msgspec.structs.replace(world.settings, host_lost_rebuild_s=20.0)
    machine = await world.ready_machine()
    await world.store.hosts.beat("host-b", 2, time.time())  # live, with room
    lost = await _lose(world, machine.id, 31 + 10)  # lost, not yet for 20 s
    assert await lost.sweep() == 1
    assert (await world.store.get_instance(machine.instance_id)).current_machine_id == machine.id
    await world.store.hosts.beat(HOST, 2, time.time() - 31 - 20)
    for _ in range(2):  # a second sweep (or prober replica) makes nothing more
        await lost.sweep()
    await world.bus.settle()
    current = (await world.store.get_instance(machine.instance_id)).current_machine_id
    assert current is not None
    assert current != machine.id
    old = await world.machine(machine.id)  # archived: this world's provisioner is its host's
    assert (old.status, old.status_reason) == (S.ARCHIVED, f"its host {HOST} is lost: rebuilt "
                                                           "on a live host")  # fmt: skip
    assert [e.machine_id for e in world.bus.events if isinstance(e, MachineCreated)][-1] == current
    assert len([e for e in world.bus.events if isinstance(e, MachineArchived)]) == 1
    assert len(await world.store.list_machines(machine.instance_id)) == 2


async def test_no_rebuild_while_no_live_host_has_room_or_when_off(world: World) -> None:
    machine = await world.ready_machine()
    lost = await _lose(world, machine.id, 31 + 3600)
    assert await lost.sweep() == 1  # off by default: lost, and kept
    world.settings = msgspec.structs.replace(world.settings, host_lost_rebuild_s=20.0)
    lost = HostLossMonitor(store=world.store, bus=world.bus, settings=world.settings)
    await world.store.hosts.beat("host-b", 0, time.time())
    await world.store.hosts.set_draining("host-b", True)  # the only live host takes nothing
    await lost.sweep()
    assert (await world.store.get_instance(machine.instance_id)).current_machine_id == machine.id
    assert (await world.machine(machine.id)).status is S.LOST
