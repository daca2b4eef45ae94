"""Benchmark 22: forking machines, ``local`` on each home filesystem (``btrfs``: copy-on-write
homes on the image fleetd makes; ``plain``: a copy with the source frozen), and ``docker`` (the
home volume copied by a helper container while the source is paused: bench/fork_docker.py).

- fork-to-ready p50 of a machine with a 1 GiB home at rest (written, then ``sync``), from
  ``machines.fork`` to the fork's ``machine.ready``, against a cold create-to-ready and against
  ``cp -a`` of that home on the data dir's own filesystem, sampled in the same run;
- the source's longest pause during a fork: a process in the source writes a timestamp in a
  loop; the longest gap between two during the forks, against the longest outside them;
- disk used by 10 forks before they write, against one home (btrfs: the image's used bytes).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, Report, percentile, temp_dir
from bench.fork_docker import docker_stack
from bench.stack import FleetUp, servers
from bench.warm_pool import _Side
from contracts.gateway.fork import MACHINES_FORK, ForkMachineParams
from contracts.gateway.rpc import MACHINES_EXEC, MACHINES_PROCESS_START
from contracts.gateway.types import MachineExecParams, MachineProcessStartParams
from providers.local import homes as homes_fs

HOME_MIB = 1024
FILL = (f"mkdir -p ~/big && for i in $(seq 16); do "
        f"head -c {HOME_MIB // 16}M /dev/urandom > ~/big/f$i; done")  # fmt: skip
TICKS = "while :; do date +%s%N; done > ~/ticks"


async def _fork_to_ready(side: _Side, mid: str, count: int = 1) -> tuple[list[str], float, float]:
    """Fork, wait for every fork's ready: their ids, the call's start and end (perf_counter)."""
    t0 = time.perf_counter()
    got = await side.gw.call(MACHINES_FORK, ForkMachineParams(machine_id=mid, count=count))
    ids = [m.id for m in got.machines]
    await side.watch.wait_all("ready", ids, timeout_s=300)
    failed = [m for m in ids if m in side.watch.failed]
    if failed:
        raise RuntimeError(f"forks failed: {[side.watch.failed[m] for m in failed]}")
    return ids, t0, time.perf_counter()


def _gaps(home: Path, windows: list[tuple[float, float]], offset: float) -> tuple[float, float]:
    """The longest gap between two ticks inside the windows, and outside them (s)."""
    ticks = [int(x) / 1e9 for x in (home / "ticks").read_text().split()[:-1] if x.isdigit()]
    inside = outside = 0.0
    for a, b in itertools.pairwise(ticks):
        during = any(s - offset <= b and a <= e - offset for s, e in windows)
        if during:
            inside = max(inside, b - a)
        else:
            outside = max(outside, b - a)
    return inside, outside


def _used_bytes(mount: Path) -> int:
    subprocess.run(["sync"], check=True)
    st = shutil.disk_usage(mount)
    return st.used


def _cp_a(home: Path, root: Path) -> float:
    target = root / "cp-a"
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", str(home), str(target)], check=True)
    took = time.perf_counter() - t0
    shutil.rmtree(target)
    return took


@dataclass
class Measured:
    forks: list[float]
    creates: list[float]
    cp: float
    inside: float
    outside: float
    disk: float | None = None
    fork_ids: list[str] = field(default_factory=list)


async def _measure(
    side: _Side, n: int, root: Path, home_of: Callable[[str], Awaitable[Path]]
) -> tuple[str, Measured]:
    """Cold creates, then ``n`` forks of a machine with a 1 GiB home at rest and a process
    writing ticks; the source's id and the figures (``disk``: not measured here)."""
    await side.start(n + 2)
    await side.sample()  # unmeasured: warms the services' caches
    creates = [(await side.sample())[1]["ready"] for _ in range(n)]
    mid, _ = await side.sample()
    home = await home_of(mid)
    await side.gw.call(MACHINES_EXEC, MachineExecParams(
        machine_id=mid, command=["sh", "-c", FILL], timeout_s=600))  # fmt: skip
    await side.gw.call(MACHINES_PROCESS_START, MachineProcessStartParams(
        machine_id=mid, command=["sh", "-c", TICKS]))  # fmt: skip
    # Off the clock: the home written out, as a home at rest is (a snapshot first writes
    # out what is not: 1.4 s for 1 GiB just written, docs/fork-snapshots.md).
    await asyncio.to_thread(subprocess.run, ["sync"], check=True)
    await asyncio.sleep(1.0)
    offset = time.perf_counter() - time.time()
    forks, windows, ids = [], [], []
    for _ in range(n):
        made, t0, t1 = await _fork_to_ready(side, mid)
        forks.append(t1 - t0)
        windows.append((t0, t1))
        ids += made
    await asyncio.sleep(0.5)
    inside, outside = _gaps(home, windows, offset)
    return mid, Measured(forks, creates, _cp_a(home, root), inside, outside, fork_ids=ids)


async def _side(report: Report, root: Path, mode: str, n: int) -> None:
    env = {"FLEET_HOMES_FS": mode, "FLEET_WARM_POOL": "local=0"}
    with servers(root / mode) as (ns, vk), FleetUp(root / mode, ns.url, vk.url, env) as up:
        side = _Side(up, ns.url)

        async def home_of(mid: str) -> Path:
            return up.data_dir / "machines" / mid / "home"

        try:
            mid, got = await _measure(side, n, root, home_of)
            if mode == "btrfs":
                before = _used_bytes(up.data_dir / homes_fs.MOUNT)
                await _fork_to_ready(side, mid, 10)
                got.disk = (_used_bytes(up.data_dir / homes_fs.MOUNT) - before) / 2**20
        finally:
            await side.close()
    _report(report, mode, got)


def _report(report: Report, mode: str, got: Measured) -> None:
    fork = percentile(got.forks, 50)
    name = f"fork-to-ready p50, 1 GiB home, {mode}"
    report.add(Figure("22", name, fork, "s", percentile(got.creates, 50), "cold create"))
    met = fork <= 1.0 and fork <= 0.2 * got.cp
    report.add(Figure("22", name, fork, "s", got.cp, "cp -a of the home",
                      target="<= 1 s and <= 0.2x", met=met))  # fmt: skip
    report.add(Figure("22", f"source's longest pause during a fork, {mode}", got.inside, "s",
                      got.outside, "longest gap outside forks", target="<= 100 ms",
                      met=got.inside <= 0.1))  # fmt: skip
    if got.disk is not None:
        disk = HOME_MIB + got.disk
        report.add(Figure("22", "disk used by 10 forks before they write", disk,
                          "MB", HOME_MIB, "one home", target="<= 1.1x",
                          met=disk <= 1.1 * HOME_MIB))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    n = 2 if quick else 5
    print(f"[22] fork: {n} forks of a machine with a 1 GiB home, btrfs and plain homes, docker")
    with temp_dir() as root:
        for mode in ("btrfs", "plain"):
            await _side(report, root, mode, n)
        await _docker_side(report, root, n)


async def _docker_side(report: Report, root: Path, n: int) -> None:
    """As ``_side``, on ``docker``: the home volume copied while the source is paused."""
    async with docker_stack(root) as (side, home_of, copied):
        _, got = await _measure(side, n, root, home_of)
        copies = [await copied(f) for f in got.fork_ids]
    _report(report, "docker", got)
    report.note(
        f"docker forks: the source paused p50 {percentile([c.pause_ms for c in copies], 50):.0f}"
        f" ms for each copy (the fork's event's pauseMs), the copy took p50 "
        f"{percentile([c.took_ms for c in copies], 50):.0f} ms (1 GiB, cp -a in a helper)"
    )
