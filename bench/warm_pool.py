"""Benchmark 12: machines.create to ready from the warm pool, against a cold start (local
here; docker in ``bench/warm_pool_docker.py``, in the same run).

Two `fleet up` stacks, each on its own NATS and valkey, run side by side: one with a warm
pool of one local machine (``FLEET_WARM_POOL=local=1``), one without (``local=0``). Samples
alternate between them, one machine at a time, and each starts only once the warm stack's
pool is full again (its refill is not on either clock). A warm sample counts only if the
machine really came from the pool (its ``pool-slot`` file); the cold stack is the baseline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.common import Figure, Report, percentile, temp_dir
from bench.create_ready import STAGES
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)
from contracts.models import ProviderName
from providers.local import POOL_SLOT_FILE, UP_MARKER


def _pool_ready(data_dir: Path) -> int:
    return len(list((data_dir / "pool").glob(f"local/*/*/{UP_MARKER}")))


async def _pool_full(data_dir: Path, size: int) -> None:
    async with asyncio.timeout(60):
        while True:
            if _pool_ready(data_dir) >= size:
                return
            await asyncio.sleep(0.02)  # off the clock: the sample starts after this


class _Side:
    def __init__(self, up: FleetUp, nats_url: str, provider: ProviderName = "local") -> None:
        self.up, self.nats_url, self.provider = up, nats_url, provider
        self.gw = Gateway(up.url)
        self.watch = EventWatch()
        self.instances: list[str] = []

    async def start(self, n: int) -> None:
        await self.watch.start(self.nats_url)
        made = await self.gw.batch(
            INSTANCES_CREATE, [CreateInstanceParams(name=f"bench-{i}") for i in range(n + 1)]
        )
        self.instances = [i.id for i in made]

    async def sample(self) -> tuple[str, dict[str, float]]:
        """Create one machine, wait for ready: its id, each stage's arrival after the call."""
        t0 = time.perf_counter()
        machine = await self.gw.call(
            MACHINES_CREATE,
            CreateMachineParams(instance_id=self.instances.pop(), provider=self.provider),
        )
        await self.watch.wait_all("ready", [machine.id], timeout_s=120)
        if machine.id in self.watch.failed:
            raise RuntimeError(f"machine {machine.id} failed: {self.watch.failed[machine.id]}")
        return machine.id, {s: self.watch.seen[s, machine.id] - t0 for s in STAGES}

    async def close(self) -> None:
        await self.watch.close()
        await self.gw.close()


@asynccontextmanager
async def warm_and_cold(instances: int) -> AsyncIterator[tuple[_Side, _Side]]:
    """Two stacks side by side, one keeping a local warm pool of one machine and one keeping
    none, each with ``instances`` instances, its pool full and its first (unmeasured) create
    made: the services' first calls warm their caches."""
    with (
        temp_dir() as root,
        servers(root / "warm") as (wns, wvk),
        servers(root / "cold") as (cns, cvk),
        FleetUp(root / "warm", wns.url, wvk.url, {"FLEET_WARM_POOL": "local=1"}) as wup,
        FleetUp(root / "cold", cns.url, cvk.url, {"FLEET_WARM_POOL": "local=0"}) as cup,
    ):
        warm, cold = _Side(wup, wns.url), _Side(cup, cns.url)
        try:
            await warm.start(instances)
            await cold.start(instances)
            await _pool_full(wup.data_dir, 1)
            await warm.sample()
            await cold.sample()
            yield warm, cold
        finally:
            await warm.close()
            await cold.close()


async def run(report: Report, quick: bool) -> None:
    n = 5 if quick else 20
    print(f"[12] warm pool: {n} machines from the pool, {n} cold, alternating")
    async with warm_and_cold(n + 1) as (warm, cold):
        wup = warm.up
        totals: dict[str, list[float]] = {"warm": [], "cold": []}
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        missed = 0
        for _ in range(n):
            await _pool_full(wup.data_dir, 1)
            mid, marks = await warm.sample()
            if (wup.data_dir / "machines" / mid / POOL_SLOT_FILE).exists():
                totals["warm"].append(marks["ready"])
                prev = 0.0
                for s in STAGES:
                    stages[s].append(marks[s] - prev)
                    prev = marks[s]
            else:
                missed += 1
            await _pool_full(wup.data_dir, 1)
            totals["cold"].append((await cold.sample())[1]["ready"])
    _report(report, totals, stages, missed)
    from bench.warm_pool_docker import run_docker

    await run_docker(report, n, _Side)


def _report(
    report: Report, totals: dict[str, list[float]], stages: dict[str, list[float]], missed: int
) -> None:
    w50, c50 = percentile(totals["warm"], 50), percentile(totals["cold"], 50)
    report.add(
        Figure(
            "12", "create-to-ready p50, warm pool", w50, "s", c50, "cold", "<= 50 ms", w50 <= 0.050
        )
    )
    w95, c95 = percentile(totals["warm"], 95), percentile(totals["cold"], 95)
    report.add(Figure("12", "create-to-ready p95, warm pool", w95, "s", c95, "cold"))
    report.note(
        "warm stage p50s: "
        + ", ".join(f"{s} +{percentile(v, 50) * 1000:.1f} ms" for s, v in stages.items())
    )
    if missed:
        report.note(f"{missed} warm sample(s) did not come from the pool (left out)")
