"""Benchmark 27's warm-pool row: a gvisor create from the warm pool against a namespaces create
from the warm pool, in the same run (``python -m bench.gvisor_pool [--quick]`` runs this row
alone; ``python -m bench --only 27`` runs it after the others).

One `fleet up` stack, its NATS on the machines' bridge gateway (gVisor's network stack has a
loopback of its own), keeping one namespaces machine and one gvisor sandbox warm
(``FLEET_WARM_POOL=local=1,local:gvisor=1``). Samples alternate, one machine at a time, each
starting once both pools are full again (a refill is on neither clock), each created with its
runtime named: ``machines.create`` to ``machine.ready``. A sample counts only if the machine
came from its runtime's pool (its ``pool-slot`` file; a gvisor one's sandbox bundle too).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiodocker

from bench.common import Report, percentile, temp_dir
from bench.create_ready import STAGES
from bench.gvisor import STACK_ENV, WAIT_S, _create
from bench.gvisor_steps import Steps, figure, p50
from bench.stack import FleetUp, servers
from bench.warm_pool import _Side
from contracts.gateway.rpc import MACHINES_GET
from contracts.gateway.types import MachineRef
from contracts.models import Runtime
from controlplane.settings import Settings
from providers.docker import ensure_network
from providers.gvisor import is_gvisor
from providers.local import POOL_SLOT_FILE, UP_MARKER

#: Each runtime's pool directory under ``<data>/pool``.
_POOLS: dict[Runtime, str] = {"namespaces": "local", "gvisor": "gvisor"}


async def _pools_full(data_dir: Path) -> None:
    async with asyncio.timeout(WAIT_S):
        while not _full(data_dir):  # noqa: ASYNC110 - a file: no event to await
            await asyncio.sleep(0.02)  # off the clock: the sample starts after this


def _full(data_dir: Path) -> bool:
    return all(any((data_dir / "pool" / d).glob(f"*/*/{UP_MARKER}")) for d in _POOLS.values())


def _pooled(data_dir: Path, mid: str, runtime: Runtime) -> bool:
    machine_dir = data_dir / "machines" / mid
    return (machine_dir / POOL_SLOT_FILE).exists() and is_gvisor(machine_dir) == (
        runtime == "gvisor"
    )


async def run(report: Report, quick: bool, steps: Steps | None = None) -> None:
    n = 3 if quick else 10
    print(f"[27] gvisor warm pool: {n} gvisor creates from the pool against {n} namespaces "
          "creates from the pool, alternating")  # fmt: skip
    steps = steps or Steps()
    times: dict[Runtime, list[float]] = {"gvisor": [], "namespaces": []}
    stages: dict[Runtime, list[list[float]]] = {"gvisor": [], "namespaces": []}
    got = await steps.run("warm pool", 120 if quick else 400, _measure(n, times, stages))
    missed, platform = got or (0, "")
    _report(report, steps, times, missed, platform)
    for runtime, marks in stages.items():
        if marks:
            report.note(f"27: {runtime} warm-pool create, stage p50s: " + ", ".join(
                f"{s} +{percentile([m[i] for m in marks], 50) * 1000:.0f} ms"
                for i, s in enumerate(STAGES)))  # fmt: skip


async def _measure(n: int, times: dict[Runtime, list[float]],
                   stages: dict[Runtime, list[list[float]]]) -> tuple[int, str]:  # fmt: skip
    """Every sample, into ``times`` and ``stages``: how many did not come from their pool, and
    the gvisor machines' platform."""
    async with aiodocker.Docker() as docker:
        gateway = await ensure_network(docker, Settings().docker_network)
    env = STACK_ENV | {"FLEET_WARM_POOL": "local=1,local:gvisor=1"}
    missed, platform = 0, ""
    with (
        temp_dir() as root,
        servers(root, host=gateway) as (ns, vk),
        FleetUp(root, ns.url, vk.url, env) as up,
    ):
        side = _Side(up, ns.url)
        try:
            await side.start(2 * n + 2)
            order: tuple[Runtime, Runtime] = ("gvisor", "namespaces")
            for runtime in order:  # unmeasured: the services' caches warm
                await _pools_full(up.data_dir)
                await _create(side, runtime)
            for _ in range(n):
                for runtime in order:
                    await _pools_full(up.data_dir)
                    t0 = time.perf_counter()
                    mid, took = await _create(side, runtime)
                    if _pooled(up.data_dir, mid, runtime):
                        times[runtime].append(took)
                        stages[runtime].append(_stages(side, mid, t0))
                    else:
                        missed += 1
                    if runtime == "gvisor" and not platform:
                        got = await side.gw.call(MACHINES_GET, MachineRef(machine_id=mid))
                        platform = str(got.runtime_platform)
        finally:
            await side.close()
    return missed, platform


def _stages(side: _Side, mid: str, t0: float) -> list[float]:
    """Each stage's time after the one before (the first: after the call)."""
    at = [side.watch.seen[s, mid] - t0 for s in STAGES]
    return [b - a for a, b in zip([0.0, *at], at, strict=False)]


def _report(report: Report, steps: Steps, times: dict[Runtime, list[float]], missed: int,
            platform: str) -> None:  # fmt: skip
    by_name: dict[str, list[float]] = {str(k): v for k, v in times.items()}
    gv, nsp = p50(by_name, "gvisor"), p50(by_name, "namespaces")
    figure(report, steps, "warm pool", "gvisor create-to-ready p50, warm pool", gv, "s", nsp,
           "namespaces warm-pool create", target="<= 2x namespaces",
           met=gv is not None and nsp is not None and gv <= 2 * nsp,
           note=f"platform {platform or 'unknown'}")  # fmt: skip
    if not (times["gvisor"] and times["namespaces"]):
        return
    p95 = {k: percentile(v, 95) * 1000 for k, v in times.items()}
    report.note(f"27: warm-pool create p95 gvisor {p95['gvisor']:.0f} ms, namespaces "
                f"{p95['namespaces']:.0f} ms; {len(times['gvisor'])} samples each")  # fmt: skip
    if missed:
        report.note(f"27: {missed} warm sample(s) did not come from their pool (left out)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.gvisor_pool")
    parser.add_argument("--quick", action="store_true", help="3 samples of each, not 10")
    asyncio.run(run(Report(), parser.parse_args().quick))
