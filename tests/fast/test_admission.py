"""Every way a machine comes to run passes the instance's ``maxRunningMachines`` and its host's
room (services/gateway/rpc/admission.py), in memory: a resume and a wake of a paused machine are
refused past them with nothing moved, calls at once on every path never pass the limit
together, and pause, resume and snapshot have a per-token budget. On real runsc sandboxes and
real daemons: tests/integration/test_gvisor_admission.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.bus.events import MachineCreated, MachineResumeRequested, MachineStarted
from contracts.errors import HostFull, RateLimited, RunningMachinesLimit
from contracts.models import Machine
from contracts.status import STOPPED_OR_STOPPING, TERMINAL, MachineStatus as S
from controlplane.store import F_HOST_ID
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of
from tests.fast.test_pause import ready_gvisor
from tests.fast.test_wake import EXEC, settled

method = pytest.mark.gateway_method
NOT_RUNNING = TERMINAL | STOPPED_OR_STOPPING | {S.PAUSED}


@pytest.fixture
def round_trips(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each store command lets other tasks run first, as a real server's round trip does (the
    in-memory one answers without ever yielding): calls at once interleave between their
    reads and writes."""
    client = world.store.redis
    send: Callable[..., Awaitable[Any]] = client.execute_command

    async def yielding(*args: Any, **options: Any) -> Any:
        await asyncio.sleep(0)
        return await send(*args, **options)

    monkeypatch.setattr(client, "execute_command", yielding)


async def machines(world: World, tmp_path: Path, count: int) -> list[Machine]:
    """``count`` ready gvisor machines of one instance: its current one and forks of it."""
    made = [await ready_gvisor(world, tmp_path)]
    if count > 1:
        forked = await world.rpc("machines.fork", {"machineId": made[0].id, "count": count - 1})
        await world.bus.settle()
        made += [await world.machine(f["id"]) for f in forked["machines"]]
    assert [m.status for m in made] == [S.READY] * count
    return made


async def pause(world: World, *ms: Machine) -> None:
    for m in ms:
        await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    assert [(await world.machine(m.id)).status for m in ms] == [S.PAUSED] * len(ms)


async def limit(world: World, instance_id: str, n: int) -> None:
    await world.rpc("instances.setLimits", {"instanceId": instance_id, "maxRunningMachines": n})


async def running(world: World, instance_id: str) -> list[str]:
    return [m.id for m in await world.store.list_machines(instance_id)
            if m.status not in NOT_RUNNING]  # fmt: skip


@method("machines.resume")
async def test_a_resume_past_the_running_limit_is_refused_and_the_machine_stays_paused(
    world: World, tmp_path: Path
) -> None:
    """The hole: fork up to the limit, pause, fork again, resume: more running than allowed."""
    a, b = await machines(world, tmp_path, 2)
    await pause(world, a)
    await limit(world, a.instance_id, 1)
    with pytest.raises(RunningMachinesLimit) as refused:
        await world.rpc("machines.resume", {"machineId": a.id})
    assert refused.value.code == 1041
    assert refused.value.data == {"limit": 1, "running": 1}
    await world.bus.settle()
    assert (await world.machine(a.id)).status is S.PAUSED
    assert (world.bus.of(MachineResumeRequested), world.provider.resumes) == ([], [])
    assert await running(world, a.instance_id) == [b.id]
    # Even with nothing running, a limit of 0 lets nothing resume.
    await pause(world, b)
    await limit(world, a.instance_id, 0)
    for m in (a, b):
        with pytest.raises(RunningMachinesLimit):
            await world.rpc("machines.resume", {"machineId": m.id})
    assert world.bus.of(MachineResumeRequested) == []
    # Within the limit it resumes as before.
    await limit(world, a.instance_id, 1)
    assert (await world.rpc("machines.resume", {"machineId": a.id}))["status"] == "resuming"
    await world.bus.settle()
    assert (await world.machine(a.id)).status is S.READY


@method("machines.exec")
async def test_a_wake_past_the_running_limit_is_refused_and_the_machine_stays_paused(
    world: World, tmp_path: Path
) -> None:
    a, b = await machines(world, tmp_path, 2)
    await pause(world, a)
    await limit(world, a.instance_id, 1)
    calls = len(world.daemons.calls)
    with pytest.raises(RunningMachinesLimit) as refused:
        await world.rpc(EXEC[0], {"machineId": a.id, **EXEC[1]})
    assert refused.value.data == {"limit": 1, "running": 1}
    await world.bus.settle()
    assert (await world.machine(a.id)).status is S.PAUSED
    assert (world.bus.of(MachineResumeRequested), world.provider.resumes) == ([], [])
    assert len(world.daemons.calls) == calls  # nothing reached a daemon
    await world.rpc("machines.stop", {"machineId": b.id})
    await world.bus.settle()
    ran = await settled(world, world.rpc(EXEC[0], {"machineId": a.id, **EXEC[1]}))
    assert ran["exitCode"] == 1  # room again: woken and answered


@method("machines.resume")
async def test_a_resume_on_a_host_below_its_memory_floor_is_refused(
    world: World, tmp_path: Path
) -> None:
    [a] = await machines(world, tmp_path, 1)
    await pause(world, a)
    assert a.host_id is not None
    await world.store.hosts.beat(a.host_id, 0, time.time(), memory_low=True)
    for call in (("machines.resume", {}), EXEC):
        with pytest.raises(HostFull) as refused:
            await world.rpc(call[0], {"machineId": a.id, **call[1]})
        assert refused.value.code == 1048
        assert refused.value.data is not None
        assert refused.value.data["memoryLow"] is True
    assert (await world.machine(a.id)).status is S.PAUSED
    assert world.bus.of(MachineResumeRequested) == []


async def test_calls_at_once_on_every_path_never_pass_the_limit_together(
    world: World, tmp_path: Path, round_trips: None
) -> None:
    """Limit 1, nothing running: resumes (of machines on two hosts: a lock per host alone
    would let both count at once), a wake, a start and a fork at once. One of them runs a
    machine; every other is refused."""
    a, b, c, s = await machines(world, tmp_path, 4)
    await pause(world, a, b, c)
    await world.rpc("machines.stop", {"machineId": s.id})
    await world.bus.settle()
    await world.store.redis.hset(world.store.keys.k_machine(b.id), F_HOST_ID, "host-b")
    await limit(world, a.instance_id, 1)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("machines.resume", {"machineId": a.id}),
        ("machines.resume", {"machineId": b.id}),
        (EXEC[0], {"machineId": c.id, **EXEC[1]}),
        ("machines.start", {"machineId": s.id}),
        ("machines.fork", {"machineId": s.id}),
    ]
    got = await settled(world, asyncio.gather(*(world.rpc(name, params) for name, params
                                                in calls), return_exceptions=True))  # fmt: skip
    refused = [g for g in got if isinstance(g, RunningMachinesLimit)]
    assert len(refused) == len(calls) - 1, got
    others = [g for g in got if isinstance(g, BaseException)
              and not isinstance(g, RunningMachinesLimit)]  # fmt: skip
    assert not others, got
    moved = (len(world.bus.of(MachineResumeRequested))
             + len([e for e in world.bus.of(MachineStarted) if e.machine_id == s.id])
             + len([e for e in world.bus.events if isinstance(e, MachineCreated)
                    and e.fork_of == s.id]))  # fmt: skip
    assert moved == 1
    assert len(await running(world, a.instance_id)) == 1


async def test_resumes_at_once_under_a_limit_of_one_move_exactly_one_machine(
    world: World, tmp_path: Path, round_trips: None
) -> None:
    ms = await machines(world, tmp_path, 5)
    await pause(world, *ms)
    for i, m in enumerate(ms):  # each on a host of its own
        await world.store.redis.hset(world.store.keys.k_machine(m.id), F_HOST_ID, f"host-{i}")
    await limit(world, ms[0].instance_id, 1)
    got = await asyncio.gather(*(world.rpc("machines.resume", {"machineId": m.id}) for m in ms),
                               return_exceptions=True)  # fmt: skip
    assert [g["status"] for g in got if isinstance(g, dict)] == ["resuming"], got
    assert len([g for g in got if isinstance(g, RunningMachinesLimit)]) == 4, got
    assert len(world.bus.of(MachineResumeRequested)) == 1


@method("machines.create", "machines.fork")
async def test_a_create_from_a_snapshot_or_a_fork_past_the_limit_is_refused(
    world: World, tmp_path: Path
) -> None:
    [a] = await machines(world, tmp_path, 1)
    snap = await world.rpc("machines.snapshot", {"machineId": a.id, "name": "s"})
    await limit(world, a.instance_id, 1)
    before = len(await world.store.list_machines(a.instance_id))
    with pytest.raises(RunningMachinesLimit):
        await world.rpc("machines.create", {"instanceId": a.instance_id,
                                            "fromSnapshot": snap["id"]})  # fmt: skip
    with pytest.raises(RunningMachinesLimit):
        await world.rpc("machines.fork", {"machineId": a.id})
    assert len(await world.store.list_machines(a.instance_id)) == before


@method("machines.pause", "machines.resume", "machines.snapshot")
async def test_pause_resume_and_snapshot_share_a_per_token_budget(
    world: World, tmp_path: Path
) -> None:
    """``FLEET_RATE_PAUSE_PER_MIN`` (3 here): each checkpoints, restores or copies a machine."""
    world.reconfigure(rate_pause_per_min=3)
    [a] = await machines(world, tmp_path, 1)
    mine = token_of(a.instance_id)
    await world.rpc("machines.pause", {"machineId": a.id}, mine)
    await world.bus.settle()
    await world.rpc("machines.resume", {"machineId": a.id}, mine)
    await world.bus.settle()
    await world.rpc("machines.snapshot", {"machineId": a.id, "name": "one"}, mine)
    for name, params in (("machines.pause", {}), ("machines.resume", {}),
                         ("machines.snapshot", {"name": "two"})):  # fmt: skip
        with pytest.raises(RateLimited) as refused:
            await world.rpc(name, {"machineId": a.id, **params}, mine)
        assert refused.value.data is not None
        assert refused.value.data["retryAfterS"] >= 1
    await world.bus.settle()
    assert (await world.machine(a.id)).status is S.READY  # the refused pause did nothing
    assert world.provider.pauses == [a.id]
    assert len(await world.store.snapshots.of_instance(a.instance_id)) == 1
    await world.rpc("machines.pause", {"machineId": a.id})  # the operator's is not limited
