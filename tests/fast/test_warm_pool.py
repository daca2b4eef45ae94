"""The warm pool's rules, in memory: fill, use once, refill, replace the dead, shrink under
memory pressure, stop everything on exit. (The local backend with real sandboxed daemons:
tests/integration/test_warm_pool.py.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from contracts.bus.events import MachineCreated
from contracts.bus.subjects import EventKind as K
from contracts.errors import ProviderError
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from controlplane.settings import MAX_DOCKER_POOL, SettingsError, parse_warm_pool
from environments import devcontainer as dc
from environments.lifecycle_commands import MachineLifecycle
from environments.users import MachineUser
from providers.host_memory import mem_available_mb
from providers.warm_pool import UP_TIMEOUT_S, PoolMachine, WarmPool
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World
from tests.fast.test_provisioner import created
from tests.waiters import wait_until


class FakeMachine:
    def __init__(self, slot: str, on_death: Callable[[], None]) -> None:
        self.slot = slot
        self.on_death = on_death
        self.dead = False
        self.stopped = False
        self.claimed = ""
        self.home_kept = False

    @property
    def alive(self) -> bool:
        return not self.dead and not self.stopped

    async def wait_up(self) -> None:
        await asyncio.sleep(0)

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        self.claimed, self.home_kept = machine_id, home_kept
        return f"fake:{self.slot}"

    async def hand_over(self, token: str) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def die(self) -> None:
        self.dead = True
        self.on_death()


class FakeBackend:
    name = "fake"

    def __init__(self, fail: int = 0, adopts_homes: bool = True) -> None:
        self.adopts_homes = adopts_homes
        self.started: list[FakeMachine] = []
        self.fail = fail
        self.closed = False
        self.sweeps = 0
        self._ids = itertools.count(1)

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        if self.fail:
            self.fail -= 1
            raise ProviderError("cannot start")
        machine = FakeMachine(f"s{next(self._ids)}", on_death)
        self.started.append(machine)
        return machine

    async def remove_orphans(self) -> int:
        self.sweeps += 1
        return 0

    async def close(self) -> None:
        self.closed = True


def pool(backend: FakeBackend, size: int, memory: list[float]) -> WarmPool:
    return WarmPool(
        backend,
        size,
        min_available_mb=100,
        memory=lambda: memory[0],
        check_s=0.01,
        refill_delay_s=0.02,
    )


async def test_fills_hands_each_machine_out_once_and_refills() -> None:
    backend = FakeBackend()
    async with pool(backend, 2, [1000.0]) as p:
        await p.wait_filled()
        first = p.take()
        second = p.take()
        assert first is not None
        assert second is not None
        assert first is not second
        third = p.take()  # None, or a machine started since: never one handed out before
        assert third not in (first, second)
        await p.wait_filled()
        assert {m.slot for m in p.ready}.isdisjoint({first.slot, second.slot})
    assert backend.closed


async def test_an_empty_pool_says_so() -> None:
    async with pool(FakeBackend(), 1, [1000.0]) as p:
        await p.wait_filled()
        while p.take() is not None:  # until the pool is empty (refills may come meanwhile)
            pass
        assert p.take() is None


async def test_a_dead_machine_is_replaced() -> None:
    backend = FakeBackend()
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        victim = backend.started[0]
        victim.die()
        await wait_until(lambda: len(backend.started) == 2 and p._live() == 1, timeout=5)
        taken = p.take()
        assert taken is not victim
        assert victim.stopped  # its remains cleaned up


async def test_leftovers_are_swept_at_the_start_and_again_while_the_pool_runs() -> None:
    """A dead provisioner's exited containers must not wait for the next provisioner start."""
    backend = FakeBackend()
    swept = WarmPool(backend, 1, min_available_mb=100, memory=lambda: 1000.0, check_s=0.01,
                     sweep_s=0.05)  # fmt: skip
    async with swept as p:
        assert backend.sweeps == 1  # before the first machine starts
        await p.wait_filled()
        await wait_until(lambda: backend.sweeps >= 3, timeout=5)
    after = backend.sweeps
    async with pool(backend, 1, [1000.0]) as p:  # the default: every ten minutes
        await p.wait_filled()
        await wait_until(lambda: p._live() == 1 and not p._tasks, timeout=5)
        assert backend.sweeps == after + 1


async def test_memory_pressure_shrinks_the_pool_and_stops_refills() -> None:
    backend = FakeBackend()
    memory = [1000.0]
    async with pool(backend, 3, memory) as p:
        await p.wait_filled()
        memory[0] = 10.0
        await wait_until(lambda: not p.ready, timeout=5)
        assert all(m.stopped for m in backend.started)
        assert p.take() is None
        memory[0] = 1000.0
        await p.wait_filled()


async def test_start_failures_back_off_and_recover() -> None:
    backend = FakeBackend(fail=2)
    async with pool(backend, 1, [1000.0]) as p:
        await asyncio.wait_for(p.wait_filled(), 10)
    assert backend.fail == 0


class HangingMachine(FakeMachine):
    async def wait_up(self) -> None:
        await asyncio.Event().wait()


class HangingBackend(FakeBackend):
    """Its first machine never says it is up."""

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        if self.started:
            return await super().spawn(on_death)
        machine = HangingMachine("hung", on_death)
        self.started.append(machine)
        return machine


class TestOnItsClock:
    """The pool's rules on a manual clock, each just before and at its time."""

    @staticmethod
    def on(clock: ManualClock, backend: FakeBackend, size: int = 1) -> WarmPool:
        return WarmPool(backend, size, min_available_mb=100, memory=lambda: 1000.0,
                        check_s=1.0, refill_delay_s=0.5, clock=clock)  # fmt: skip

    async def test_a_failed_start_is_tried_again_after_its_backoff_not_before(self) -> None:
        clock, backend = ManualClock(), FakeBackend(fail=1)
        async with self.on(clock, backend) as p:
            await clock.advance(0)
            assert (backend.fail, backend.started) == (0, [])  # the first start failed
            # The first backoff is 0.5 s, drawn from its upper half (jitter): 0.25-0.5 s.
            await clock.advance(0.25 - TICK)
            assert backend.started == []
            await clock.advance(0.25 + TICK)  # 0.5 s in all
            await asyncio.wait_for(p.wait_filled(), 10)
            assert len(backend.started) == 1

    async def test_the_refill_after_a_take_waits_its_delay_not_longer(self) -> None:
        clock, backend = ManualClock(), FakeBackend()
        async with self.on(clock, backend) as p:
            await clock.advance(0)
            await asyncio.wait_for(p.wait_filled(), 10)
            assert p.take() is not None
            await clock.advance(0.5 - TICK)
            assert len(backend.started) == 1  # held: the claimed machine starts first
            await clock.advance(TICK)
            assert len(backend.started) == 2
            await asyncio.wait_for(p.wait_filled(), 10)

    async def test_a_machine_not_up_within_its_limit_is_stopped_and_replaced(self) -> None:
        clock, backend = ManualClock(), HangingBackend()
        async with self.on(clock, backend) as p:
            await clock.advance(0)
            [hung] = backend.started
            await clock.advance(UP_TIMEOUT_S - TICK)
            assert not hung.stopped
            await clock.advance(TICK)
            assert hung.stopped
            await clock.advance(0.5)  # its backoff
            await asyncio.wait_for(p.wait_filled(), 10)
            assert p.ready[0] is not hung


async def test_exit_stops_every_pooled_machine() -> None:
    backend = FakeBackend()
    async with pool(backend, 2, [1000.0]) as p:
        await p.wait_filled()
        taken = p.take()
    assert isinstance(taken, FakeMachine)
    assert not taken.stopped  # a claimed machine is its machine's, not the pool's
    assert all(m.stopped for m in backend.started if m is not taken)


def test_mem_available_reads_meminfo(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "meminfo"  # type: ignore[operator]
    path.write_text("MemTotal: 2048000 kB\nMemAvailable:    1024000 kB\n")
    assert mem_available_mb(path) == 1000.0
    assert mem_available_mb(path.with_name("absent")) is None


@pytest.mark.parametrize(
    "raw",
    [
        "local",
        "local=-1",
        "local=x",
        "k8s=1",
        "local=1;docker=2",
        "local@node:22=1",
        "docker@-x=1",
        "docker@=1",
        "local:gvisor",
        "local:gvisor=x",
        "docker:gvisor=1",
        "local:kata=1",
        "local:gvisor@node:22=1",
    ],
)
def test_warm_pool_setting_is_checked(raw: str) -> None:
    with pytest.raises(ValueError, match="FLEET_WARM_POOL"):
        parse_warm_pool(raw)


def test_docker_pool_is_capped_below_the_engine_clients_connections() -> None:
    # Each pooled container holds two of aiodocker's 100 connections until it is claimed.
    assert parse_warm_pool(f"docker={MAX_DOCKER_POOL}") == {"docker": MAX_DOCKER_POOL}
    with pytest.raises(ValueError, match=r"FLEET_WARM_POOL: 33 docker machines is more than 32"):
        parse_warm_pool(f"local=2,docker={MAX_DOCKER_POOL + 1}")
    with pytest.raises(ValueError, match=r"33 docker machines"):  # environments' pools count
        parse_warm_pool(f"docker={MAX_DOCKER_POOL},docker@node:22=1")
    assert parse_warm_pool("local=200") == {"local": 200}  # a local pool holds no connection


def test_warm_pool_setting_parses() -> None:
    assert parse_warm_pool(" local=2, docker=0 ") == {"local": 2, "docker": 0}
    assert parse_warm_pool("docker@registry:5000/node:22=2") == {"docker@registry:5000/node:22": 2}
    assert parse_warm_pool("") == {}
    assert parse_warm_pool("local=1,local:gvisor=2") == {"local": 1, "local:gvisor": 2}
    from controlplane.settings import Settings

    with pytest.raises(SettingsError, match="FLEET_WARM_POOL"):  # the process stops at start
        Settings.from_env({"FLEET_WARM_POOL": "local=many"})


def test_a_gvisor_platforms_local_pool_keeps_gvisor_sandboxes_too() -> None:
    from controlplane.settings import Settings

    def sizes(**env: str) -> dict[str, int]:
        return Settings.from_env({f"FLEET_{k.upper()}": v for k, v in env.items()}).warm_pool_sizes

    assert sizes(warm_pool="local=2") == {"local": 2}
    assert sizes(warm_pool="local=2", runtime="gvisor") == {"local": 2, "local:gvisor": 2}
    assert sizes(warm_pool="local=2,local:gvisor=0", runtime="gvisor") == {
        "local": 2, "local:gvisor": 0}  # fmt: skip
    assert sizes(warm_pool="local:gvisor=1") == {"local:gvisor": 1}


class RecordingBackend(FakeBackend):
    """Pooled machines that note what the bus held when they got their identity."""

    def __init__(self, world: World, fail_claim: bool = False) -> None:
        super().__init__()
        self.world = world
        self.fail_claim = fail_claim
        self.handed: list[tuple[str, list[K]]] = []

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        machine = RecordingMachine(f"s{len(self.started) + 1}", on_death, self)
        self.started.append(machine)
        return machine


class RecordingMachine(FakeMachine):
    def __init__(self, slot: str, on_death: Callable[[], None], backend: RecordingBackend) -> None:
        super().__init__(slot, on_death)
        self.backend = backend

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        if self.backend.fail_claim:
            raise ProviderError("the pooled machine is gone")
        return await super().claim(machine_id, home_kept=home_kept)

    async def hand_over(self, token: str) -> None:
        self.backend.handed.append((token, self.backend.world.bus.kinds(self.claimed)))


async def test_a_claim_hands_the_identity_over_only_after_provisioned(world: World) -> None:
    world.provider.report_ready = False
    backend = RecordingBackend(world)
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        event = await created(world)
        await world.bus.settle()
    machine = await world.machine(event.machine_id)
    assert machine.external_id == "fake:s1"  # the pooled machine, not a cold start
    assert world.provider.starts == []
    [(token, kinds_then)] = backend.handed
    assert kinds_then == [K.CREATED, K.PROVISIONED]  # a cold machine's order
    sealed = await world.store.machine_secret(machine.id)
    assert sealed is not None
    assert world.box.decrypt(sealed) == token


async def test_a_failed_claim_starts_the_machine_cold(world: World) -> None:
    world.provider.report_ready = False
    backend = RecordingBackend(world, fail_claim=True)
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        event = await created(world)
        await world.bus.settle()
    assert [mid for mid, _ in world.provider.starts] == [event.machine_id]
    assert backend.started[0].stopped
    assert (await world.machine(event.machine_id)).status is S.BOOTING


async def stopped_machine(world: World) -> str:
    """A ready machine (cold: no pool yet), stopped."""
    m = await world.ready_machine()
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.STOPPED
    world.provider.report_ready = False  # pooled fakes report nothing: it stays booting
    return m.id


async def test_a_start_adopts_a_pooled_machine_told_who_it_is_after_provisioned(
    world: World,
) -> None:
    mid = await stopped_machine(world)
    starts = len(world.provider.starts)
    backend = RecordingBackend(world)
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        await world.rpc("machines.start", {"machineId": mid})
        await world.bus.settle()
    machine = await world.machine(mid)
    assert (machine.status, machine.external_id) == (S.BOOTING, "fake:s1")
    assert len(world.provider.starts) == starts  # no cold start
    # The pool may already be refilling its slot: the machine given is the one claimed.
    [pooled] = [m for m in backend.started if m.claimed]
    assert (pooled.claimed, pooled.home_kept) == (mid, True)  # given the home it has
    [(token, kinds_then)] = backend.handed
    assert kinds_then[-2:] == [K.STARTED, K.PROVISIONED]  # as after a cold start
    sealed = await world.store.machine_secret(mid)
    assert sealed is not None
    assert world.box.decrypt(sealed) == token  # its own credentials, as before its stop


async def test_a_start_is_cold_where_the_pool_cannot_give_a_home_or_runs_another_image(
    world: World,
) -> None:
    docker_like = FakeBackend(adopts_homes=False)  # a container's volumes are fixed
    mid = await stopped_machine(world)
    async with pool(docker_like, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        await world.rpc("machines.start", {"machineId": mid})
        await world.bus.settle()
        assert [m for m, _ in world.provider.starts].count(mid) == 2  # create, then cold start
        assert not docker_like.started[0].claimed  # still the pool's
    # A machine of an environment's image: never the default image's pool.
    world.provider.report_ready = True
    other = await stopped_machine(world)
    await world.store.environments.set_of_machine(other, "custom", "sha256:" + "e" * 64)
    async with pool(FakeBackend(), 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        await world.rpc("machines.start", {"machineId": other})
        await world.bus.settle()
        assert [m for m, _ in world.provider.starts].count(other) == 2
        assert p.ready  # not taken


async def test_a_forks_first_start_adopts_a_pooled_machine_with_its_copied_home(
    world: World,
) -> None:
    m = await world.ready_machine()
    world.provider.report_ready = False
    backend = RecordingBackend(world)
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        [fork] = (await world.rpc("machines.fork", {"machineId": m.id}))["machines"]
        await world.bus.settle()
    assert world.provider.clones == [(m.id, fork["id"])]  # its home copied first...
    [pooled] = backend.started
    assert (pooled.claimed, pooled.home_kept) == (fork["id"], True)  # ...then given to it
    assert fork["id"] not in [mid for mid, _ in world.provider.starts]
    [(_, kinds_then)] = backend.handed
    assert kinds_then == [K.CREATED, K.PROVISIONED]


async def test_a_machine_with_a_user_of_its_own_starts_cold(world: World) -> None:
    """A devcontainer's remoteUser: a pooled machine runs as the provider's default user, so
    such a machine is never claimed from a pool."""
    world.provider.report_ready = False
    backend = RecordingBackend(world)
    async with pool(backend, 1, [1000.0]) as p:
        await p.wait_filled()
        world.provisioner.claims.pools["local"] = p
        inst = await world.instance()
        machine = await world.store.create_machine(inst.id, "local")
        dev = dc.parse(b'{"image": "x", "remoteUser": "dev"}', ".devcontainer.json", workspace="/w")
        user = MachineUser(name="dev", uid=1234, gid=1234)
        await world.store.lifecycles.save(machine.id, MachineLifecycle(devcontainer=dev, user=user))
        await world.bus.publish(MachineCreated(event_id=new_event_id(), machine_id=machine.id,
                                               instance_id=inst.id, provider="local"))  # fmt: skip
        await world.bus.settle()
    assert [mid for mid, _ in world.provider.starts] == [machine.id]
    assert [m.claimed for m in backend.started] == [""]
