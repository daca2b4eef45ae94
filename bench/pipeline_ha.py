"""Benchmark 11: time to all ready for many machines on `fleet up --ha` against one node.

Both layouts are started here by `fleet up` itself, with its embedded servers, one after the
other in the same run: one node (one nats-server, one valkey, one process per service), then
``--ha`` (3 NATS nodes with the stream and consumers at 3 replicas, a valkey primary with 2
replicas behind 3 sentinels, 2 replicas of every service). Machines use the ``swarm`` provider
as in benchmark 3, and the same load: every instance made first (not timed), then every
``machines.create`` in JSON-RPC batches of 50, 4 in flight, to the first gateway; the clock stops
at the last ``machine.ready``, watched on NATS as the monitor user `fleet up` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import Figure, Report, temp_dir
from bench.stack import EventWatch, FleetUp, Gateway
from contracts.gateway_rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)
from contracts.models import Instance

HOST_SIZE = 250
BATCH = 50
BATCHES_IN_FLIGHT = 4


async def run(report: Report, quick: bool, *, machines: int | None = None) -> None:
    n = machines or (200 if quick else 1000)
    print(f"[11] pipeline --ha: {n} machines on `fleet up --ha` against `fleet up` (one node)")
    with temp_dir() as root:
        single = await _all_ready(root / "single", n, ha=False)
        ha = await _all_ready(root / "ha", n, ha=True)
    if single is None or ha is None:
        report.note(f"[11] not every machine was ready: one node {single}, --ha {ha}")
        return
    report.add(Figure("11", f"time to all {n} ready, --ha", ha, "s", single, "one node"))


async def _all_ready(root: Path, n: int, *, ha: bool) -> float | None:
    root.mkdir(parents=True)
    env = {"FLEET_SWARM_HOST_SIZE": str(HOST_SIZE), "FLEET_LOG_LEVEL": "warning"}
    with FleetUp(root, None, None, extra_env=env, extra_args=("--ha",) if ha else ()) as up:
        auth = json.loads((up.data_dir / "nats-auth.json").read_text())
        watch = await EventWatch().start(
            up.banner_field("nats"), user="monitor", password=auth["monitor_password"]
        )
        gw = Gateway(up.url)
        try:
            ids, took = await _create_all(gw, watch, n)
        finally:
            await gw.close()
            await watch.close()
    layout = "--ha" if ha else "one node"
    ready = sum(1 for m in ids if ("ready", m) in watch.seen)
    print(f"    {layout}: {ready} of {n} ready, the last after {took:.2f} s")
    return took if ready == n else None


async def _create_all(gw: Gateway, watch: EventWatch, n: int) -> tuple[list[str], float]:
    instances: list[Instance] = []
    for i in range(0, n, 100):
        names = [CreateInstanceParams(name=f"ha-{j}") for j in range(i, min(n, i + 100))]
        instances += await gw.batch(INSTANCES_CREATE, names)
    sem = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def create(chunk: Sequence[Instance]) -> list[str]:
        async with sem:
            calls = [CreateMachineParams(instance_id=inst.id, provider="swarm") for inst in chunk]
            return [m.id for m in await gw.batch(MACHINES_CREATE, calls)]

    chunks = [instances[i : i + BATCH] for i in range(0, n, BATCH)]
    t0 = time.perf_counter()
    ids = [mid for part in await asyncio.gather(*(create(c) for c in chunks)) for mid in part]
    with contextlib.suppress(TimeoutError):  # reported by the caller as "k of n ready"
        await watch.wait_all("ready", ids, timeout_s=600)
    seen = [watch.seen["ready", m] for m in ids if ("ready", m) in watch.seen]
    return ids, (max(seen) - t0) if seen else float("nan")
