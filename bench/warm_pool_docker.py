"""Benchmark 12, docker: machines.create to ready from the docker warm pool, against a cold
docker start, in the same run as the local figures (``bench/warm_pool.py``).

As for local: two `fleet up` stacks side by side (NATS on the docker machines' gateway, where
containers reach it), one with ``FLEET_WARM_POOL=docker=1``, one with ``docker=0``; samples
alternate, each only once the warm stack's pool is full again; a warm sample counts only if
its container came from the pool (it carries the ``fleet.pool`` label).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import aiodocker

from base.poolwire import POOL_UP_LOG
from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import FleetUp, servers
from contracts.models import ProviderName
from controlplane.settings import Settings
from fleet.up import prepare
from providers.docker import (
    LABEL_POOL,
    LABEL_STACK,
    POOL_PREFIX,
    container_name,
    home_volumes,
    remove_volume,
)


class Side(Protocol):
    async def start(self, n: int) -> None: ...
    async def sample(self) -> tuple[str, dict[str, float]]: ...
    async def close(self) -> None: ...


class SideOf(Protocol):
    def __call__(self, up: FleetUp, nats_url: str, provider: ProviderName) -> Side: ...


async def _pool_full(docker: aiodocker.Docker, up: FleetUp) -> None:
    """Until the stack's pooled container says it waits (off the clock)."""
    stack = str(up.data_dir.resolve())
    async with asyncio.timeout(120):
        while True:
            found = await docker.containers.list(
                filters={"label": [LABEL_POOL, f"{LABEL_STACK}={stack}"]}
            )
            for c in found:
                if not c["Names"][0].startswith(f"/{POOL_PREFIX}"):
                    continue  # claimed
                try:
                    said = "".join(await c.log(stdout=True, stderr=True))
                except aiodocker.DockerError as exc:
                    if exc.status not in (404, 409):
                        raise
                    continue  # being removed (it died, or the stack replaced it)
                if POOL_UP_LOG in said:
                    return
            await asyncio.sleep(0.05)


async def _pooled(docker: aiodocker.Docker, machine_id: str) -> bool:
    info: Any = await docker._query_json(f"containers/{container_name(machine_id)}/json")
    return LABEL_POOL in (info["Config"]["Labels"] or {})


async def run_docker(report: Report, n: int, side_of: SideOf) -> None:
    print(f"[12] docker warm pool: {n} containers from the pool, {n} cold, alternating")
    with temp_dir() as root:
        gateway, _ = await prepare(Settings(data_dir=str(root / "build")), "[12]")
        with (
            servers(root / "warm", host=gateway) as (wns, wvk),
            servers(root / "cold", host=gateway) as (cns, cvk),
            FleetUp(root / "warm", wns.url, wvk.url, {"FLEET_WARM_POOL": "docker=1"}) as wup,
            FleetUp(root / "cold", cns.url, cvk.url, {"FLEET_WARM_POOL": "docker=0"}) as cup,
        ):
            async with aiodocker.Docker() as docker:
                warm, cold = side_of(wup, wns.url, "docker"), side_of(cup, cns.url, "docker")
                try:
                    totals, missed = await _samples(docker, wup, warm, cold, n)
                finally:
                    await warm.close()
                    await cold.close()
                    await _remove(docker, wup, cup)
    w50, c50 = percentile(totals["warm"], 50), percentile(totals["cold"], 50)
    report.add(Figure("12", "docker create-to-ready p50, warm pool", w50, "s", c50,
                      "docker cold"))  # fmt: skip
    stages = {k: v for k, v in totals.items() if k not in ("warm", "cold")}
    report.note(
        "docker warm stage p50s: "
        + ", ".join(f"{s} +{percentile(v, 50) * 1000:.1f} ms" for s, v in stages.items())
    )
    if missed:
        report.note(f"{missed} docker warm sample(s) did not come from the pool (left out)")


async def _samples(
    docker: aiodocker.Docker, wup: FleetUp, warm: Side, cold: Side, n: int
) -> tuple[dict[str, list[float]], int]:
    await warm.start(n + 1)
    await cold.start(n + 1)
    await _pool_full(docker, wup)
    await warm.sample()  # unmeasured: the services' first call warms their caches
    await cold.sample()
    totals: dict[str, list[float]] = {"warm": [], "cold": []}
    missed = 0
    for _ in range(n):
        await _pool_full(docker, wup)
        mid, marks = await warm.sample()
        if await _pooled(docker, mid):
            totals["warm"].append(marks["ready"])
            prev = 0.0
            for stage, at in marks.items():
                totals.setdefault(stage, []).append(at - prev)
                prev = at
        else:
            missed += 1
        await _pool_full(docker, wup)
        totals["cold"].append((await cold.sample())[1]["ready"])
    return totals, missed


async def _remove(docker: aiodocker.Docker, *ups: FleetUp) -> None:
    """The run's containers and their home volumes (its stacks' only: the engine is shared)."""
    for up in ups:
        stack = str(up.data_dir.resolve())
        found = await docker.containers.list(
            all=True, filters={"label": [f"{LABEL_STACK}={stack}"]}
        )
        for c in found:
            try:
                await c.show()
                volumes = home_volumes(c)
                await c.delete(force=True)
            except aiodocker.DockerError as exc:
                if exc.status not in (404, 409):
                    raise
                continue  # a pooled one the stack's own keeper is removing as it died
            for name in volumes:
                await remove_volume(docker, name)
