"""Benchmark 3: 1,000 machines through the whole pipeline, many daemons per OS process.

`fleet up` (every service its own process) runs against NATS and valkey started here; machines
use the ``swarm`` provider (``FLEET_SWARM_HOST_SIZE`` daemons per host process, each with its
own NATS connection and identity). All instances are made first (not timed); then every
``machines.create`` is sent (JSON-RPC batches of 50, 4 batches in flight) and the clock stops
when the last ``machine.ready`` event arrives.

The floor, measured in the same run before the pipeline (on its own NATS server, so the
services never see it): the same number of swarm daemons started straight through
``SwarmProvider`` from this process, until the last one's ready report is stored. That is what
the machines themselves cost; everything above it is the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import nats

from bench import env_fanout, skeleton
from bench.common import Figure, Report, temp_dir
from bench.daemons import stored_keys
from bench.procstat import cpu_seconds, peak_rss_mb, rss_mb, syscalls
from bench.profiling import sampled
from bench.stack import EventWatch, FleetUp, Gateway, nats_server, servers
from contracts.bus.subjects import EventKind
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)
from contracts.ids import new_machine_id
from contracts.models import Instance
from controlplane.bus import ensure_stream
from controlplane.settings import Settings
from fleet.up import NatsServer
from providers.swarm import (
    SwarmProvider,
    running_host_pid,
    stop_all_swarm,
    swarm_root,
)

STAGES = ("provisioned", "daemon-status-reported", "setup-pushed", "ready")
HOST_SIZE = 250
BATCH = 50
BATCHES_IN_FLIGHT = 4


def _cpu(ns: NatsServer) -> float:
    return (cpu_seconds(ns.proc.pid) or 0.0) if ns.proc is not None else 0.0


def host_pids(data_dir: Path) -> dict[str, int]:
    hosts = swarm_root(data_dir) / "hosts"
    found = {d.name: running_host_pid(d) for d in hosts.iterdir()} if hosts.is_dir() else {}
    return {name: pid for name, pid in sorted(found.items()) if pid is not None}


class Floor(NamedTuple):
    seconds: float  # to n ready reports
    hosts_mb: float  # resident in all hosts
    cpu: dict[str, float]  # CPU seconds: swarm hosts, nats-server, the starting client


async def swarm_floor(root: Path, n: int) -> Floor:
    """The same daemons with no pipeline at all."""
    data_dir = root / "floor"
    with nats_server(root / "floor-nats") as ns:
        nc = await nats.connect(ns.url, name="bench-floor")
        await ensure_stream(nc.jetstream(), Settings())
        watch = await EventWatch().start(ns.url, [EventKind.DAEMON_STATUS_REPORTED])
        provider = SwarmProvider(
            data_dir=data_dir, nats_url=ns.url, environ=os.environ, host_size=HOST_SIZE
        )
        ids = [new_machine_id() for _ in range(n)]
        sem = asyncio.Semaphore(64)  # what one provisioner process runs at once

        async def start(mid: str) -> None:
            async with sem:
                await provider.start(mid, f"token-{mid}")

        try:
            cpu0 = {"nats-server": _cpu(ns), "client": cpu_seconds(os.getpid()) or 0.0}
            t0 = time.perf_counter()
            await asyncio.gather(*(start(m) for m in ids))
            await watch.wait_all("daemon-status-reported", ids, timeout_s=300)
            elapsed = max(watch.seen["daemon-status-reported", m] for m in ids) - t0
            hosts = host_pids(data_dir).values()
            cpu = {"swarm hosts": sum(cpu_seconds(p) or 0.0 for p in hosts)}
            cpu["nats-server"] = _cpu(ns) - cpu0["nats-server"]
            cpu["client"] = (cpu_seconds(os.getpid()) or 0.0) - cpu0["client"]
            await asyncio.sleep(1)
            return Floor(elapsed, sum(rss_mb(p) or 0 for p in hosts), cpu)
        finally:
            await watch.close()
            await nc.close()
            stop_all_swarm(data_dir)


async def run(
    report: Report,
    quick: bool,
    *,
    machines: int | None = None,
    scale: bool = True,
    fanout: bool = True,
    profile: Path | None = None,
) -> None:
    n = machines or (200 if quick else 1000)
    print(f"[3] pipeline: {n} machines, swarm provider ({HOST_SIZE} daemons per host process)")
    with temp_dir() as root:
        floor = await swarm_floor(root, n) if scale else Floor(0.0, 0.0, {})
        floor_s, hosts_mb, skel_s = floor.seconds, floor.hosts_mb, 0.0
        if floor.cpu:
            _cpu_note(report, "the swarm floor", floor.cpu, floor_s)
            skel_s = await _skeleton(report, root, n, floor_s)
        with servers(root) as (ns, valkey):
            env = {"FLEET_SWARM_HOST_SIZE": str(HOST_SIZE)}
            with FleetUp(root, ns.url, valkey.url, extra_env=env) as up:
                gw = Gateway(up.url)
                # Every stage's events only for a profile: the watch's own CPU is the run's.
                kinds = [EventKind(k) for k in STAGES] if profile else [EventKind.READY]
                watch = await EventWatch().start(ns.url, [*kinds, EventKind.FAILED])
                try:
                    spids = {"nats-server": ns.proc.pid if ns.proc else 0}
                    spids["valkey"] = valkey.proc.pid if valkey.proc else 0
                    ids = await _pipeline(
                        report, up, gw, watch, n, (floor_s, skel_s), hosts_mb, profile, spids
                    )
                    if fanout:
                        homes = {m: swarm_root(up.data_dir) / "machines" / m / "home" for m in ids}
                        secret = (up.data_dir / "secret-key").read_text().strip()
                        async with stored_keys(valkey.url, secret) as keys:
                            await env_fanout.run(report, gw, ns.url, keys, homes)
                    if scale:
                        _memory(report, up, ns, valkey.proc.pid if valkey.proc else None)
                finally:
                    await watch.close()
                    await gw.close()


async def _pipeline(
    report: Report,
    up: FleetUp,
    gw: Gateway,
    watch: EventWatch,
    n: int,
    baselines: tuple[float, float],
    hosts_mb: float,
    profile: Path | None,
    servers_pids: dict[str, int],
) -> list[str]:
    """``baselines``: the swarm floor's and the design skeleton's seconds (0: not measured)."""
    floor_s, skel_s = baselines
    instances: list[Instance] = []
    for i in range(0, n, 100):
        names = [CreateInstanceParams(name=f"bench-{j}") for j in range(i, min(n, i + 100))]
        instances += await gw.batch(INSTANCES_CREATE, names)
    pids = up.service_pids()
    others = dict(pids, **servers_pids, bench=os.getpid())
    cpu0 = {name: cpu_seconds(pid) or 0.0 for name, pid in others.items()}
    io0 = {name: syscalls(pid) for name, pid in pids.items()}
    sem = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def create(chunk: Sequence[Instance]) -> list[str]:
        async with sem:
            calls = [CreateMachineParams(instance_id=inst.id, provider="swarm") for inst in chunk]
            return [m.id for m in await gw.batch(MACHINES_CREATE, calls)]

    chunks = [instances[i : i + BATCH] for i in range(0, n, BATCH)]
    t0 = time.perf_counter()
    with sampled(profile, pids, "pipeline"):
        ids = [mid for part in await asyncio.gather(*(create(c) for c in chunks)) for mid in part]
        created_s = time.perf_counter() - t0
        with contextlib.suppress(TimeoutError):  # reported below as "only k of n ready"
            await watch.wait_all("ready", ids, timeout_s=600)
    ready = [m for m in ids if ("ready", m) in watch.seen]
    wall = time.perf_counter() - t0
    cpu = {name: (cpu_seconds(pid) or 0.0) - cpu0[name] for name, pid in others.items()}
    io = {name: [b - a for a, b in zip(io0[name], syscalls(pid), strict=True)]
          for name, pid in pids.items()}  # fmt: skip
    # Hosts start during the run: all their CPU time is the run's.
    cpu["swarm hosts"] = sum(cpu_seconds(p) or 0.0 for p in host_pids(up.data_dir).values())
    if len(ready) < n:
        failed = list(watch.failed.items())[:3]
        report.note(f"only {len(ready)} of {n} ready after {wall:.0f} s; failed: {failed}")
    if not ready:
        return ids
    all_ready = max(watch.seen["ready", m] for m in ready) - t0
    if floor_s:
        report.add(
            Figure(
                "3",
                f"time to all {n} ready",
                all_ready if len(ready) == n else None,
                "s",
                floor_s,
                "swarm floor",
                "< 30 s" if n >= 1000 else "",
                all_ready < 30 and len(ready) == n if n >= 1000 else None,
            )
        )
        report.add(
            Figure(
                "3",
                "pipeline throughput",
                len(ready) / all_ready,
                "machines/s",
                n / floor_s,
                "swarm floor",
            )
        )
        if skel_s:
            report.add(Figure("3", "pipeline throughput vs skeleton", len(ready) / all_ready,
                              "machines/s", n / skel_s, "design skeleton"))  # fmt: skip
        report.note(f"all {n} machines.create answered after {created_s:.2f} s")
        report.note(
            "last machine at each stage: "
            + ", ".join(
                f"{s} {max(watch.seen[s, m] for m in ids if (s, m) in watch.seen) - t0:.1f} s"
                for s in STAGES
                if any((s, m) in watch.seen for m in ids)
            )
        )
        report.note(
            "CPU seconds used during the run: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
            + f"; total {sum(cpu.values()):.1f} of {os.cpu_count()} cores x {wall:.1f} s wall"
        )
        report.note(
            "system calls per machine (read/write): "
            + ", ".join(f"{k} {r / n:.1f}/{w / n:.1f}" for k, (r, w) in io.items() if r or w)
        )
        report.note(
            f"swarm floor: {n} daemons in {-(-n // HOST_SIZE)} host processes, "
            f"{hosts_mb:.0f} MB resident in all ({hosts_mb / n:.2f} MB per daemon, "
            f"interpreters included)"
        )
    return ids


async def _skeleton(report: Report, root: Path, n: int, floor_s: float) -> float:
    """The design skeleton's seconds for n machines (0.0 if not all got ready), reported."""
    skel = await skeleton.run(root, n, HOST_SIZE)
    if skel.seconds is None:
        waited = skeleton.READY_TIMEOUT_S
        report.note(f"design skeleton: only {skel.ready} of {n} ready after {waited:.0f} s "
                    "(a stage died? see its stderr above)")  # fmt: skip
        return 0.0
    _cpu_note(report, "the design skeleton", skel.cpu, skel.seconds)
    report.add(Figure("3", "design skeleton throughput", n / skel.seconds, "machines/s",
                      n / floor_s, "swarm floor"))  # fmt: skip
    return skel.seconds


def _cpu_note(report: Report, what: str, cpu: dict[str, float], seconds: float) -> None:
    split = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    total = sum(cpu.values())
    report.note(f"CPU seconds used by {what}: {split}; total {total:.1f} in {seconds:.1f} s")


def _memory(report: Report, up: FleetUp, ns: NatsServer, valkey_pid: int | None) -> None:
    procs = dict(up.service_pids())
    procs |= {f"swarm {name}": pid for name, pid in host_pids(up.data_dir).items()}
    if ns.proc is not None:
        procs["nats-server"] = ns.proc.pid
    if valkey_pid is not None:
        procs["valkey"] = valkey_pid
    for name, pid in procs.items():
        report.add(Figure("3", f"peak RSS {name}", peak_rss_mb(pid), "MB"))
