"""``machines.fork``: the rules, in memory (the real stage services on fakeredis, the fake bus
and provider). Real daemons, both home filesystems: tests/integration/test_fork.py."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from structlog.testing import capture_logs

from contracts.bus.events import MachineCreated, MachineProvisioned
from contracts.daemon.rpc import GET_VERSION
from contracts.errors import (
    Conflict,
    Forbidden,
    InvalidParams,
    NotFound,
    RunningMachinesLimit,
    SnapshotLimit,
)
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Retry
from services.gateway.rpc.fork import SOURCE_BACK_S
from services.provisioner.service import provisioner
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_MACHINE, token_of, two_instances

method = pytest.mark.gateway_method


@method("machines.fork")
async def test_forks_are_new_machines_of_the_instance_made_ready_from_its_home(
    world: World,
) -> None:
    a, _ = await two_instances(world)
    m = await world.ready_machine(a)
    got = await world.rpc("machines.fork", {"machineId": m.id, "count": 3}, token_of(a))
    forks = [f["id"] for f in got["machines"]]
    assert len(set(forks)) == 3
    assert m.id not in forks
    await world.bus.settle()
    for f in forks:
        machine = await world.machine(f)
        assert (machine.status, machine.instance_id) == (S.READY, a)
    assert sorted(world.provider.clones) == sorted((m.id, f) for f in forks)
    created = [e for e in world.bus.events if isinstance(e, MachineCreated) and e.fork_of]
    assert {e.machine_id for e in created} == set(forks)
    copies = [e.home_copy for e in world.bus.events if isinstance(e, MachineProvisioned)]
    assert [c.source for c in copies if c is not None] == [m.id] * 3
    # The source stays the instance's current machine, and keeps running.
    assert (await world.store.get_instance(a)).current_machine_id == m.id
    assert (await world.machine(m.id)).status is S.READY
    # A stopped machine can be forked too.
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    [again] = (await world.rpc("machines.fork", {"machineId": m.id}))["machines"]
    await world.bus.settle()
    assert (await world.machine(again["id"])).status is S.READY
    assert (await world.machine(m.id)).status is S.STOPPED


@method("machines.fork")
async def test_a_fork_runs_its_sources_environment_not_the_instances_new_one(
    world: World,
) -> None:
    a, _ = await two_instances(world)
    m = await world.ready_machine(a)
    await world.store.environments.set_of_machine(m.id, "image team/env:1", "sha256:" + "1" * 64)
    await world.rpc("instances.setEnvironment",
                    {"instanceId": a, "environment": {"image": "team/env:2"}})  # fmt: skip
    [fork] = (await world.rpc("machines.fork", {"machineId": m.id}))["machines"]
    got = await world.store.get_machine(fork["id"])
    assert (got.environment, got.environment_image) == ("image team/env:1", "sha256:" + "1" * 64)


@method("machines.fork")
async def test_fork_is_checked_scoped_and_counted(world: World) -> None:
    a, b = await two_instances(world)
    m = await world.ready_machine(a)
    for params, field in (
        ({"machineId": m.id, "count": 0}, "$.count"),
        ({"machineId": m.id, "count": 21}, "$.count"),
        ({"machineId": m.id, "count": "2"}, "$.count"),
        ({"machineId": "nope"}, "$.machineId"),
        ({"count": 1}, "$.machineId"),
    ):
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("machines.fork", params)
        assert (bad.value.code, bad.value.field) == (-32602, field)
    with pytest.raises(NotFound):
        await world.rpc("machines.fork", {"machineId": MISSING_MACHINE})
    with pytest.raises(Forbidden):
        await world.rpc("machines.fork", {"machineId": m.id}, token_of(b))
    await world.rpc("instances.setLimits", {"instanceId": a, "maxRunningMachines": 3})
    with pytest.raises(RunningMachinesLimit) as refused:
        await world.rpc("machines.fork", {"machineId": m.id, "count": 3})
    assert refused.value.data == {"limit": 3, "running": 1}
    await world.rpc("machines.fork", {"machineId": m.id, "count": 2})
    await world.rpc("machines.archive", {"machineId": m.id})
    with pytest.raises(Conflict):
        await world.rpc("machines.fork", {"machineId": m.id})


@method("machines.snapshot", "snapshots.list", "snapshots.delete", "machines.create")
async def test_snapshots_are_kept_until_deleted_scoped_and_limited(world: World) -> None:
    a, b = await two_instances(world)
    m = await world.ready_machine(a)
    snap = await world.rpc("machines.snapshot", {"machineId": m.id, "name": "good"}, token_of(a))
    assert (snap["name"], snap["instanceId"], snap["machineId"]) == ("good", a, m.id)
    assert snap["id"] in world.provider.snapshots
    listed = await world.rpc("snapshots.list", {"instanceId": a})
    assert [s["id"] for s in listed["snapshots"]] == [snap["id"]]
    assert (await world.rpc("snapshots.list", {"instanceId": b}))["snapshots"] == []
    # Two machines from it: more machines of the instance, each with a copy of its own.
    made = [
        await world.rpc("machines.create", {"instanceId": a, "fromSnapshot": snap["id"]})
        for _ in range(2)
    ]
    await world.bus.settle()
    for x in made:
        assert (await world.machine(x["id"])).status is S.READY
        assert (snap["id"], x["id"]) in world.provider.clones
    assert (await world.store.get_instance(a)).current_machine_id == m.id
    # Scoped: another instance's token, or a machine of another instance.
    with pytest.raises(Forbidden):
        await world.rpc("snapshots.delete", {"snapshotId": snap["id"]}, token_of(b))
    with pytest.raises(Forbidden):
        await world.rpc("machines.create", {"instanceId": b, "fromSnapshot": snap["id"]})
    with pytest.raises(Forbidden):
        await world.rpc("snapshots.list", {"instanceId": a}, token_of(b))
    for params, field in (
        ({"machineId": m.id}, "$.name"),
        ({"machineId": m.id, "name": ""}, "$.name"),
        ({"machineId": "m-1", "name": "x"}, "$.machineId"),
    ):
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("machines.snapshot", params)
        assert bad.value.field == field
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("snapshots.delete", {"snapshotId": "s-1"})
    assert bad.value.field == "$.snapshotId"
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.create", {"instanceId": a, "fromSnapshot": "nope"})
    assert bad.value.field == "$.fromSnapshot"
    # Deleted: gone from the host and the list; the machines made from it are untouched.
    assert await world.rpc("snapshots.delete", {"snapshotId": snap["id"]}) == {"deleted": True}
    assert world.provider.snapshots == set()
    assert (await world.rpc("snapshots.list", {"instanceId": a}))["snapshots"] == []
    with pytest.raises(NotFound):
        await world.rpc("snapshots.delete", {"snapshotId": snap["id"]})
    with pytest.raises(NotFound):
        await world.rpc("machines.create", {"instanceId": a, "fromSnapshot": snap["id"]})
    for x in made:
        assert (await world.machine(x["id"])).status is S.READY
    # The per-instance limit, by name.
    world.api.forks.max_snapshots = 1
    await world.rpc("machines.snapshot", {"machineId": m.id, "name": "one"})
    with pytest.raises(SnapshotLimit) as refused:
        await world.rpc("machines.snapshot", {"machineId": m.id, "name": "two"})
    assert (refused.value.code, refused.value.http_status) == (1060, 409)
    assert refused.value.data == {"limit": 1}


@method("machines.create")
async def test_a_machine_from_a_snapshot_is_of_its_sources_provider(world: World) -> None:
    """It is made by the provider that keeps the snapshot, whatever the default; another
    provider is refused. Of a docker machine, it runs the image its source ran (the layer kept
    is an image committed over that one), whatever the instance's environment is now."""
    m = await world.ready_machine()
    snap = await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
    world.reconfigure(default_provider="docker")
    params = {"instanceId": m.instance_id, "fromSnapshot": snap["id"]}
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.create", {**params, "provider": "docker"})
    assert bad.value.field == "$.provider"
    assert (await world.rpc("machines.create", params))["provider"] == m.provider
    assert (await world.rpc("machines.create", {**params, "provider": m.provider}))["provider"]

    docked = await world.store.create_machine(m.instance_id, "docker", current=False)
    image = "sha256:" + "1" * 64
    await world.store.environments.set_of_machine(docked.id, "image team/env:1", image)
    now = {"instanceId": m.instance_id, "environment": {"image": "team/env:2"}}
    await world.rpc("instances.setEnvironment", now)
    kept = msgspec.structs.replace(await world.store.snapshots.get(snap["id"]),
                                   machine_id=docked.id)  # fmt: skip
    made = await world.api.forks.made_from(kept, None)
    got = await world.store.get_machine(made.id)
    assert (got.provider, got.environment) == ("docker", "image team/env:1")
    assert got.environment_image == "sha256:" + "1" * 64


async def test_a_fork_is_made_only_by_the_host_of_the_home_it_copies(world: World) -> None:
    """Another host's provisioner hands a fork's (or a snapshot's machine's) machine.created
    back to the source's host, which makes it there."""
    m = await world.ready_machine()
    elsewhere = msgspec.structs.replace(world.settings, host_id="host-b")
    providers = {world.provider.name: world.provider}
    other = provisioner(
        store=world.store, bus=world.bus, box=world.box, providers=providers, settings=elsewhere
    )
    snap = await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
    [fork] = (await world.rpc("machines.fork", {"machineId": m.id}))["machines"]
    made = await world.rpc("machines.create", {"instanceId": m.instance_id,
                                               "fromSnapshot": snap["id"]})  # fmt: skip
    for mid in (fork["id"], made["id"]):
        [created] = world.bus.of(MachineCreated, mid)
        with pytest.raises(Retry, match=f"on host {world.settings.host_id}"):
            await other.create_archive.on_created(created)
        assert (await world.machine(mid)).host_id is None  # untouched by host-b
    await world.bus.settle()
    for mid in (fork["id"], made["id"]):
        got = await world.machine(mid)
        assert (got.status, got.host_id) == (S.READY, world.settings.host_id)


class TestSourceBack:
    """After a memory snapshot, the call waits for its source's daemon (started again) to
    answer, asking again after a backoff, for up to ``SOURCE_BACK_S`` of the clock's time;
    then it is left to the prober, logged."""

    @staticmethod
    async def unanswered(world: World) -> tuple[ManualClock, str]:
        """The fork ops on a manual clock, and a machine whose daemon does not answer."""
        clock = ManualClock()
        world.api.forks.clock = clock
        m = await world.ready_machine()
        world.daemons[m.id].mode = "unavailable"
        return clock, m.id

    async def test_a_source_that_never_answers_is_waited_for_until_the_limit_not_before(
        self, world: World
    ) -> None:
        clock, machine_id = await self.unanswered(world)
        with capture_logs() as logs:
            wait = asyncio.ensure_future(world.api.forks._source_back(machine_id))
            await clock.advance(SOURCE_BACK_S - TICK)
            assert not wait.done()
            assert len(world.daemons.calls_of(GET_VERSION.name, machine_id)) > 2  # asked again
            await clock.advance(TICK)
            await asyncio.wait_for(wait, 10)
        given_up = [e for e in logs if e["event"] == "machine.memory_source_not_back"]
        assert [e["after_s"] for e in given_up] == [SOURCE_BACK_S]

    async def test_a_source_that_answers_again_ends_the_wait_within_one_backoff(
        self, world: World
    ) -> None:
        clock, machine_id = await self.unanswered(world)
        with capture_logs() as logs:
            wait = asyncio.ensure_future(world.api.forks._source_back(machine_id))
            await clock.advance(10.0)
            assert not wait.done()
            world.daemons[machine_id].mode = "up"
            await clock.advance(1.0)  # the backoff's cap
            await asyncio.wait_for(wait, 10)
        assert not [e for e in logs if e["event"] == "machine.memory_source_not_back"]
