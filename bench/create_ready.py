"""Benchmark 2: machines.create to ready on the embedded stack, local provider, no repos.

`fleet up` runs against NATS and valkey started here; each sample creates one machine through
the gateway and waits for its ``machine.ready`` event (seen on core NATS by this process, so
no polling). The floor, measured in the same run and interleaved with the samples: starting the
daemon's Python process exactly as the local provider does (posix_spawn of ``fleet-daemon``
with the same environment) until its first NATS connection, as the NATS server timestamps it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import Figure, Report, percentile, temp_dir
from bench.daemons import daemon_env, kill_group, spawn
from bench.profiling import sampled
from bench.stack import EventWatch, FleetUp, Gateway, connz, nats_server, rfc3339_to_epoch, servers
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)
from contracts.ids import new_machine_id
from fleet.up import NatsServer
from providers.local import daemon_argv

STAGES = ("created", "provisioned", "daemon-status-reported", "setup-pushed", "ready")


async def floor_sample(ns: NatsServer, root: Path, argv: list[str] | None = None) -> float:
    """Seconds from posix_spawn of a daemon to its first NATS connection (server's clock)."""
    mid = new_machine_id()
    home = root / "floor" / mid
    home.mkdir(parents=True)
    env = daemon_env(ns.url, mid, home)
    started = time.time()
    pid = spawn(argv or daemon_argv(), env, home / "daemon.log")
    try:
        async with asyncio.timeout(30):
            while True:
                await asyncio.sleep(0.05)  # polling is not on the clock: NATS stamps the start
                conns = [c for c in connz(ns) if c.get("name") == f"daemon:{mid}"]
                if conns:
                    return rfc3339_to_epoch(conns[0]["start"]) - started
    finally:
        kill_group(pid)


async def run(report: Report, quick: bool, profile: Path | None = None) -> None:
    n = 5 if quick else 20
    print(f"[2] create-to-ready: {n} machines, local provider, one at a time")
    with (
        temp_dir() as root,
        servers(root) as (ns, valkey),
        nats_server(root / "floor-nats") as fns,
        FleetUp(root, ns.url, valkey.url) as up,
    ):
        gw = Gateway(up.url)
        watch = await EventWatch().start(ns.url)
        try:
            instances = await gw.batch(
                INSTANCES_CREATE, [CreateInstanceParams(name=f"bench-{i}") for i in range(n + 1)]
            )
            # One unmeasured machine first: the services' first call warms their caches.
            await _one(gw, watch, instances.pop().id)
            totals: list[float] = []
            floors: list[float] = []
            stages: dict[str, list[float]] = {s: [] for s in STAGES}
            with sampled(profile, up.service_pids(), "create_ready"):
                for inst in instances:
                    floors.append(await floor_sample(fns, root))
                    marks = await _one(gw, watch, inst.id)
                    totals.append(marks["ready"])
                    prev = 0.0
                    for s in STAGES:
                        stages[s].append(marks[s] - prev)
                        prev = marks[s]
        finally:
            await watch.close()
            await gw.close()
    p50, p95 = percentile(totals, 50), percentile(totals, 95)
    f50, f95 = percentile(floors, 50), percentile(floors, 95)
    report.add(
        Figure(
            "2",
            "create-to-ready p50",
            p50,
            "s",
            f50,
            "floor",
            "< 1 s and <= 2x floor",
            p50 < 1.0 and p50 <= 2 * f50,
        )
    )
    report.add(Figure("2", "create-to-ready p95", p95, "s", f95, "floor"))
    report.note(
        "stage p50s: "
        + ", ".join(f"{s} +{percentile(v, 50) * 1000:.0f} ms" for s, v in stages.items())
    )
    report.note(
        "stage maxima: " + ", ".join(f"{s} +{max(v) * 1000:.0f} ms" for s, v in stages.items())
    )


async def _one(gw: Gateway, watch: EventWatch, instance_id: str) -> dict[str, float]:
    """Create one machine, wait for ready; each stage's arrival, in seconds from the call."""
    t0 = time.perf_counter()
    machine = await gw.call(
        MACHINES_CREATE, CreateMachineParams(instance_id=instance_id, provider="local")
    )
    mid = machine.id
    await watch.wait_all("ready", [mid], timeout_s=60)
    if mid in watch.failed:
        raise RuntimeError(f"machine {mid} failed: {watch.failed[mid]}")
    return {s: watch.seen[s, mid] - t0 for s in STAGES}
