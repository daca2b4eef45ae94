"""Machines' metrics in memory: the provisioner's sampler (services/provisioner/usage_sampler.py)
on a meter of the test's and the real store on fakeredis, and ``machines.metrics``,
``machines.get`` and the gateway's per-machine gauges reading what it stored. On real machines
of each runtime: tests/integration/test_machine_metrics.py and the *_watch_metrics modules."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
import pytest

from contracts.errors import InvalidParams
from contracts.models import MachineSample
from contracts.status import MachineStatus as S
from controlplane.process.metrics import Metrics
from providers.machine_usage import Usage
from services.provisioner.usage_sampler import DISK_EVERY_S, UsageSampler
from tests.fakes.clock import ManualClock
from tests.fast.conftest import World

method = pytest.mark.gateway_method
GB = 1 << 30
START = 1_800_000_000.0  # on the sampling grid


@dataclass
class Meter:
    """A provider's ``usage``: each machine's counters (``now``), set by the test."""

    now: dict[str, Usage] = field(default_factory=dict)
    disk_reads: list[str] = field(default_factory=list)

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        got = self.now.get(machine_id)
        if got is not None and disk:
            self.disk_reads.append(machine_id)
            return got.with_disk(got.disk_bytes, 100 * GB)
        return got


def counters(cpu_s: float, memory: int, net: int, disk: int | None = 5 * GB) -> Usage:
    return Usage(cpu_ns=int(cpu_s * 1e9), memory_bytes=memory, memory_limit_bytes=GB,
                 net_in_bytes=net, net_out_bytes=net // 2, disk_bytes=disk)  # fmt: skip


async def sampled(world: World, clock: ManualClock, meter: Meter, rounds: int,
                  cores: float = 1.0) -> str:  # fmt: skip
    """A ready machine sampled ``rounds`` times 5 s apart while it uses ``cores`` and 200 MB
    and receives 1000 bytes a round."""
    m = await world.ready_machine()
    sampler = UsageSampler(world.store, {"local": meter}, world.settings.host_id, 5.0, clock)
    for n in range(rounds):
        meter.now[m.id] = counters(n * 5 * cores, 200 << 20, 1000 * n)
        await sampler.tick()
        await clock.advance(5.0)
    return m.id


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@method("machines.metrics", "machines.get", "machines.list")
async def test_samples_are_the_differences_of_readings_and_the_latest_is_on_the_machine(
    world: World, clock: ManualClock
) -> None:
    world.reconfigure(clock=clock)
    mid = await sampled(world, clock, Meter(), rounds=4, cores=0.5)
    got = await world.rpc("machines.metrics", {"machineId": mid})
    samples = msgspec.convert(got["samples"], list[MachineSample])
    assert len(samples) == 3  # the first reading only started the counts
    assert [s.at for s in samples] == [START + 5, START + 10, START + 15]
    assert {s.cpu_cores for s in samples} == {0.5}
    assert {(s.memory_bytes, s.memory_limit_bytes) for s in samples} == {(200 << 20, GB)}
    assert {(s.net_in_bytes, s.net_out_bytes) for s in samples} == {(1000, 500)}
    assert {(s.disk_bytes, s.disk_limit_bytes) for s in samples} == {(5 * GB, 100 * GB)}
    # "The last hour" as a client's clock said it a moment ago: still every sample.
    hour = await world.rpc("machines.metrics", {"machineId": mid, "since": clock.now() - 3601})
    assert hour["stepS"] == 5
    assert len(hour["samples"]) == 3
    latest = (await world.rpc("machines.get", {"machineId": mid}))["metrics"]
    assert latest["at"] == START + 15
    assert latest["cpuCores"] == 0.5
    listed = await world.rpc("machines.list", {})
    assert [m["metrics"]["at"] for m in listed["machines"] if m["id"] == mid] == [START + 15]
    await clock.advance(120)  # a minute without samples: no latest one
    assert (await world.rpc("machines.get", {"machineId": mid}))["metrics"] is None


@method("machines.metrics")
async def test_a_longer_step_aggregates_and_the_day_series_has_a_sample_a_minute(
    world: World, clock: ManualClock
) -> None:
    world.reconfigure(clock=clock)
    meter = Meter()
    mid = await sampled(world, clock, meter, rounds=30, cores=1.0)  # 2.5 minutes
    got = await world.rpc("machines.metrics", {"machineId": mid, "step": 60})
    assert got["stepS"] == 60
    assert [s["netInBytes"] for s in got["samples"]][:2] == [12_000, 12_000]  # summed
    assert {s["cpuCores"] for s in got["samples"]} == {1.0}  # averaged
    with pytest.raises(InvalidParams, match="multiple of 5"):
        await world.rpc("machines.metrics", {"machineId": mid, "step": 7})
    # Older than an hour: the minute series, whose steps are minutes.
    day = await world.rpc("machines.metrics", {"machineId": mid, "since": START - 7200})
    assert day["stepS"] == 60
    assert len(day["samples"]) == 2
    with pytest.raises(InvalidParams, match="multiple of 60"):
        await world.rpc("machines.metrics", {"machineId": mid, "since": START - 7200, "step": 5})
    # Disk is walked once a minute (the first reading, then every DISK_EVERY_S).
    assert len(meter.disk_reads) == 1 + int(30 * 5 // DISK_EVERY_S)


async def test_a_paused_machine_is_not_sampled_and_its_counts_start_again(
    world: World, clock: ManualClock
) -> None:
    meter = Meter()
    mid = await sampled(world, clock, meter, rounds=2)
    assert len(await world.store.metrics.series(mid, "fine", 0)) == 1
    await world.store.transition(mid, S.PAUSING, "pausing by request")
    sampler = UsageSampler(world.store, {"local": meter}, world.settings.host_id, 5.0, clock)
    for _ in range(3):
        await sampler.tick()
        await clock.advance(5.0)
    assert len(await world.store.metrics.series(mid, "fine", 0)) == 1  # nothing read


async def test_two_replicas_sampling_the_same_instant_store_one_sample(
    world: World, clock: ManualClock
) -> None:
    meter = Meter()
    m = await world.ready_machine()
    a = UsageSampler(world.store, {"local": meter}, world.settings.host_id, 5.0, clock)
    b = UsageSampler(world.store, {"local": meter}, world.settings.host_id, 5.0, clock)
    for n in range(3):
        meter.now[m.id] = counters(n * 5, 1 << 20, 0)
        await a.tick()
        meter.now[m.id] = counters(n * 5 + 2, 1 << 20, 0)  # the other's reading differs
        await b.tick()
        await clock.advance(5.0)
    assert [s.at for s in await world.store.metrics.series(m.id, "fine", 0)] == [
        START + 5,
        START + 10,
    ]


async def test_per_machine_gauges_are_exported_only_when_asked(world: World) -> None:
    """``FLEET_METRICS_PER_MACHINE``: each machine sampled in the last minute has its gauges,
    labelled with its id and instance; without it, none (a series per machine)."""
    mid = (await world.ready_machine()).id
    await world.store.metrics.add(
        "fine",
        {
            mid: MachineSample(
                at=time.time(), step_s=5, cpu_cores=0.75, memory_bytes=123, net_in_bytes=50
            )
        },
    )
    plain = Metrics()
    body, _ = await plain.exposition(None)
    assert b"fleet_machine_cpu_cores" not in body
    per = Metrics()
    per.per_machine(world.store)
    body, _ = await per.exposition(None)
    m = await world.store.get_machine(mid)
    labels = f'instance_id="{m.instance_id}",machine_id="{mid}"'
    assert f"fleet_machine_cpu_cores{{{labels}}} 0.75".encode() in body
    assert f"fleet_machine_memory_bytes{{{labels}}} 123.0".encode() in body
    assert f"fleet_machine_network_receive_bytes_per_second{{{labels}}} 10.0".encode() in body
    assert b"fleet_machine_disk_bytes{" not in body  # not known: no series


async def test_a_disk_measure_that_gave_nothing_keeps_the_last_figure(
    world: World, clock: ManualClock
) -> None:
    """A home's walk killed at its bound of time (or its files gone for a moment) gives no
    figure: the samples keep the last one, never a home of nothing."""
    world.reconfigure(clock=clock)
    meter = Meter()
    m = await world.ready_machine()
    sampler = UsageSampler(world.store, {"local": meter}, world.settings.host_id, 5.0, clock)
    rounds = 2 * int(DISK_EVERY_S // 5) + 1  # two measures after the first
    for n in range(rounds):
        walked = n == 0  # the first measure gave 5 GB, every later one nothing
        meter.now[m.id] = counters(n * 5, 200 << 20, 1000 * n, disk=5 * GB if walked else None)
        await sampler.tick()
        await clock.advance(5.0)
    assert len(meter.disk_reads) == 3
    got = await world.rpc("machines.metrics", {"machineId": m.id})
    samples = msgspec.convert(got["samples"], list[MachineSample])
    assert len(samples) == rounds - 1
    assert {s.disk_bytes for s in samples} == {5 * GB}
