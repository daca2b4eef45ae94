"""Memory pressure (services/provisioner/memory_pressure.py, docs/stop-start.md#memory-pressure)
on a manual clock and a memory reading the test sets: who is paused (the longest idle first,
never a busy, refused, namespaces or other host's machine), at most N a round, no round while a
pause is under way, the hysteresis, and a woken machine left alone while it is busy. Its own
loop runs; nothing sleeps. On real runsc with a memory hog in a cgroup:
tests/integration/test_gvisor_memory_pressure.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from contracts.bus.events import MachinePaused, MachinePauseRequested, PauseBy
from contracts.errors import Conflict
from contracts.status import MachineStatus as S
from services.gateway.auth.activity import ActivityClock
from services.provisioner.memory_pressure import Gauge, MemoryPressure, release_mb
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World
from tests.fast.test_pause import ready_gvisor
from tests.fast.test_wake import settled as woken

UNDER = 256
IDLE_MIN = 60.0


class Reading:
    """The host's available memory, MiB, as the test sets it (None: unreadable)."""

    def __init__(self, mb: float | None) -> None:
        self.mb = mb

    def __call__(self) -> float | None:
        return self.mb


@asynccontextmanager
async def watching(
    world: World, clock: ManualClock, memory: Reading, **changes: object
) -> AsyncIterator[MemoryPressure]:
    """Memory pressure's own loop on ``clock``, one round a second."""
    tuned = msgspec.structs.replace(world.settings, **{
        "pause_under_mb": UNDER, "pause_per_round": 2, "pause_idle_min_s": IDLE_MIN,
        "memory_pressure_tick_s": 1.0, **changes})  # fmt: skip
    async with MemoryPressure(store=world.store, bus=world.bus, settings=tuned, memory=memory,
                              clock=clock) as watcher:  # fmt: skip
        yield watcher


async def gvisor_machines(world: World, tmp_path: Path, clock: ManualClock, n: int) -> list[str]:
    made = [(await ready_gvisor(world, tmp_path, (await world.instance(f"i{k}")).id)).id
            for k in range(n)]  # fmt: skip
    # Activity written at every call, dated by the test's clock (after ready_gvisor, which
    # composes the gateway again).
    world.api.access.activity = ActivityClock(world.store, 0.0, clock)
    return made


async def used(world: World, machine_id: str) -> None:
    """Gateway activity on the machine now (an exec, as a user's)."""
    await world.rpc("machines.exec", {"machineId": machine_id, "command": ["true"]})


async def settled(world: World, clock: ManualClock, seconds: float) -> None:
    await clock.advance(seconds)
    await world.bus.settle()


def asked(world: World) -> list[str]:
    return [e.machine_id for e in world.bus.of(MachinePauseRequested)]


async def status(world: World, machine_id: str) -> S:
    return (await world.machine(machine_id)).status


async def test_the_longest_idle_gvisor_machines_are_paused_first_n_a_round_never_a_busy_one(
    world: World, tmp_path: Path
) -> None:
    clock = ManualClock()
    a, b, c, busy = await gvisor_machines(world, tmp_path, clock, 4)
    plain = (await world.ready_machine()).id  # namespaces: it cannot keep its memory
    memory = Reading(4096.0)
    async with watching(world, clock, memory):
        for mid in (b, a, c):  # b idle longest, then a, then c
            await used(world, mid)
            await settled(world, clock, 10.0)
        await settled(world, clock, IDLE_MIN)
        await used(world, busy)
        await settled(world, clock, 1.0)
        assert asked(world) == []  # plenty of memory: nothing
        memory.mb = UNDER - 1.0
        await settled(world, clock, 1.0)
        assert asked(world) == [b, a]  # two a round, the longest idle first
        for mid in (b, a):
            got = await world.machine(mid)
            assert (got.status, got.status_reason) == (S.PAUSED, "host memory low: 255 MiB "
                                                       "available, under 256 MiB "
                                                       "(FLEET_PAUSE_UNDER_MB)")  # fmt: skip
            paused = world.bus.one(MachinePaused, mid)
            assert paused.by is PauseBy.MEMORY_PRESSURE
            assert world.bus.one(MachinePauseRequested, mid).by is PauseBy.MEMORY_PRESSURE
        await used(world, busy)
        await settled(world, clock, 1.0)
        assert asked(world) == [b, a, c]  # still under: the next one
        for _ in range(5):  # still under, and only the busy one and a namespaces one left
            await used(world, busy)
            await settled(world, clock, 1.0)
        assert asked(world) == [b, a, c]
        assert (await status(world, busy), await status(world, plain)) == (S.READY, S.READY)
    assert world.provider.pauses == [b, a, c]


async def test_no_round_while_a_pause_it_asked_is_under_way(world: World, tmp_path: Path) -> None:
    clock = ManualClock()
    machines = await gvisor_machines(world, tmp_path, clock, 3)
    memory = Reading(10.0)
    async with watching(world, clock, memory, pause_per_round=1):
        await clock.advance(1.0)  # the first look starts every machine's clock
        await clock.advance(IDLE_MIN)  # the bus not settled: the pause is under way
        [first] = asked(world)
        assert await status(world, first) is S.PAUSING
        await clock.advance(5.0)
        assert asked(world) == [first]  # what it frees is read before more is asked
        await world.bus.settle()
        assert await status(world, first) is S.PAUSED
        await settled(world, clock, 1.0)
        assert len(asked(world)) == 2
        assert set(asked(world)) < set(machines)


async def test_pressure_begins_under_the_mark_and_ends_only_well_above_it(
    world: World, tmp_path: Path
) -> None:
    clock = ManualClock()
    machines = await gvisor_machines(world, tmp_path, clock, 4)
    between = (UNDER + release_mb(UNDER)) / 2
    memory = Reading(between)
    for mid in machines:
        await used(world, mid)
    async with watching(world, clock, memory, pause_per_round=1) as watcher:
        await settled(world, clock, IDLE_MIN)
        assert asked(world) == []  # above the mark: no pressure yet
        memory.mb = UNDER - 1.0
        await settled(world, clock, 1.0)
        assert len(asked(world)) == 1
        memory.mb = between  # above the mark again, not back at the release: still pressed
        await settled(world, clock, 1.0)
        assert len(asked(world)) == 2
        memory.mb = None  # unreadable: nothing changes, nothing is asked
        await settled(world, clock, 1.0)
        assert (len(asked(world)), watcher.gauge.pressed) == (2, True)
        memory.mb = float(release_mb(UNDER))  # back: pressure ends
        await settled(world, clock, 1.0)
        memory.mb = between  # between again: not under the mark, so no pressure
        await settled(world, clock, 5.0)
        assert len(asked(world)) == 2
        assert not watcher.gauge.pressed
    assert [await status(world, m) for m in machines].count(S.READY) == 2


async def test_a_machine_woken_under_pressure_is_left_alone_while_it_is_busy(
    world: World, tmp_path: Path
) -> None:
    clock = ManualClock()
    [mid] = await gvisor_machines(world, tmp_path, clock, 1)
    memory = Reading(UNDER - 100.0)
    async with watching(world, clock, memory):
        await settled(world, clock, 1.0 + IDLE_MIN)
        assert asked(world) == [mid]
        await woken(world, used(world, mid))  # wake on access: its resume is activity
        assert await status(world, mid) is S.READY
        await settled(world, clock, IDLE_MIN - 1.0)
        assert asked(world) == [mid]  # not paused again while it is busy
        await settled(world, clock, 1.0)
        assert asked(world) == [mid, mid]  # idle for FLEET_PAUSE_IDLE_MIN_S: paused again


async def test_a_refused_machine_and_another_hosts_machines_are_never_paused(
    world: World, tmp_path: Path
) -> None:
    clock = ManualClock()
    refused, other = await gvisor_machines(world, tmp_path, clock, 2)
    world.provider.fail_pause = Conflict("a connection this runsc cannot keep")
    await world.rpc("machines.pause", {"machineId": refused})
    await world.bus.settle()
    world.provider.fail_pause = None
    assert (await world.machine(refused)).status_reason.startswith("pause refused: ")
    memory = Reading(1.0)
    async with watching(world, clock, memory, host_id="another-host"):
        await settled(world, clock, 1.0 + 2 * IDLE_MIN)
    assert asked(world) == [refused]  # only its pause by hand
    async with watching(world, clock, memory):  # this host's
        await settled(world, clock, 1.0 + 2 * IDLE_MIN)
    assert asked(world) == [refused, other]


def test_a_gauge_of_zero_is_never_pressed() -> None:
    gauge = Gauge(0)
    assert not gauge.read(0.0)
    assert not gauge.read(None)
    assert release_mb(0) == 64
    assert release_mb(512) == 768
