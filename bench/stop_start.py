"""Benchmark 18: stopping and starting machines (``local``).

- start-to-ready of a stopped machine (``machines.start`` to its ``machine.ready``), p50,
  against create-to-ready cold and from the warm pool, sampled in the same run: two `fleet up`
  stacks as in benchmark 12 (one with a warm pool of one, one without); the stopped machines
  are the cold stack's, stopped and then started one at a time.
- idle host memory of N machines: the PSS of every process of the machines (each machine's
  root and its whole tree, read from /proc) with the N running and idle, against the same N
  stopped; and the host's MemAvailable in both states, which the other users of a shared host
  move too (a note, not the figure).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import Figure, Report, percentile
from bench.procstat import children, rss_mb, uss_pss_mb
from bench.stack import RpcError
from bench.warm_pool import _pool_full, _Side, warm_and_cold
from contracts.errors import MachineStopped
from contracts.gateway_rpc import MACHINES_EXEC
from contracts.gateway_stop import MACHINES_START, MACHINES_STOP
from contracts.gateway_types import MachineExecParams, MachineRef
from providers.local import POOL_SLOT_FILE, machine_roots

#: Idle means idle: the daemons' start-up work (imports, first heartbeats) is over.
SETTLE_S = 3.0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def machines_memory_mb(data_dir: Path, ids: list[str]) -> float:
    """The PSS (RSS where PSS cannot be read) of every process of these machines."""
    total = 0.0
    for mid in ids:
        for root in machine_roots(data_dir / "machines" / mid, mid):
            for pid in _tree(root):
                pss = uss_pss_mb(pid)[1]
                total += pss if pss is not None else (rss_mb(pid) or 0.0)
    return total


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _all_gone(data_dir: Path, ids: list[str]) -> None:
    """Until no process of these machines is left (the provisioner's stop has no event)."""
    async with asyncio.timeout(120):
        while any(machine_roots(data_dir / "machines" / m, m) for m in ids):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


#: The events of a start, in order (each one's arrival is noted per stage).
START_STAGES = ("started", "provisioned", "daemon-status-reported", "setup-pushed", "ready")


async def _start_to_ready(side: _Side, mid: str) -> dict[str, float]:
    """Start the stopped machine, wait for ready: each stage's arrival after the call."""
    for kind in (*START_STAGES, "failed"):
        side.watch.seen.pop((kind, mid), None)
    side.watch.failed.pop(mid, None)
    t0 = time.perf_counter()
    await side.gw.call(MACHINES_START, MachineRef(machine_id=mid))
    await side.watch.wait_all("ready", [mid], timeout_s=120)
    if mid in side.watch.failed:
        raise RuntimeError(f"machine {mid} failed on its start: {side.watch.failed[mid]}")
    return {s: side.watch.seen[s, mid] - t0 for s in START_STAGES if (s, mid) in side.watch.seen}


#: Calls per machine for the exec figures.
EXECS = 10


async def _execs(side: _Side, ids: list[str], *, refused: bool) -> list[float]:
    """``echo`` on each machine, EXECS times: each call's time. On stopped machines
    (``refused``) each must be refused with MachineStopped, on running ones it must run."""
    took = []
    params = [MachineExecParams(machine_id=m, command=["echo", "ok"]) for m in ids]
    for _ in range(EXECS):
        for p in params:
            t0 = time.perf_counter()
            try:
                await side.gw.call(MACHINES_EXEC, p)
                answered = None
            except RpcError as exc:
                answered = exc.code
            took.append(time.perf_counter() - t0)
            if answered != (MachineStopped.code if refused else None):
                raise RuntimeError(f"exec on {p.machine_id} answered {answered}")
    return took


def _idle_memory(data_dir: Path, ids: list[str]) -> tuple[float, float]:
    return machines_memory_mb(data_dir, ids), mem_available_mb()


async def _creates(warm: _Side, cold: _Side, n: int, times: dict[str, list[float]]) -> list[str]:
    """``n`` creates on each stack, alternating; the cold stack's machines (to be stopped)."""
    made: list[str] = []
    for _ in range(n):
        await _pool_full(warm.up.data_dir, 1)
        mid, marks = await warm.sample()
        if (warm.up.data_dir / "machines" / mid / POOL_SLOT_FILE).exists():
            times["warm"].append(marks["ready"])
        await _pool_full(warm.up.data_dir, 1)
        mid, marks = await cold.sample()
        times["cold"].append(marks["ready"])
        made.append(mid)
    return made


async def run(report: Report, quick: bool) -> None:
    n = 3 if quick else 10
    print(f"[18] stop/start: {n} stopped machines started, against {n} cold and {n} warm creates")
    async with warm_and_cold(n + 1) as (warm, cold):
        cup = cold.up
        times: dict[str, list[float]] = {"warm": [], "cold": [], "start": []}
        stages: dict[str, list[float]] = {s: [] for s in START_STAGES}
        to_stop = await _creates(warm, cold, n, times)
        await asyncio.sleep(SETTLE_S)  # off the clock: idle, not starting
        running = _idle_memory(cup.data_dir, to_stop)
        for mid in to_stop:
            await cold.gw.call(MACHINES_STOP, MachineRef(machine_id=mid))
        await _all_gone(cup.data_dir, to_stop)
        await asyncio.sleep(SETTLE_S)
        stopped = _idle_memory(cup.data_dir, to_stop)
        times["refused"] = await _execs(cold, to_stop, refused=True)
        for mid in to_stop:
            marks = await _start_to_ready(cold, mid)
            times["start"].append(marks["ready"])
            for s, t in marks.items():
                stages[s].append(t)
        times["exec"] = await _execs(cold, to_stop, refused=False)
    _report(report, n, times, running, stopped)
    report.note("18: start stages p50 after the call: " + ", ".join(
        f"{s} {percentile(v, 50) * 1000:.0f} ms" for s, v in stages.items() if v))  # fmt: skip


def _report(
    report: Report,
    n: int,
    times: dict[str, list[float]],
    running: tuple[float, float],
    stopped: tuple[float, float],
) -> None:
    start, cold = percentile(times["start"], 50), percentile(times["cold"], 50)
    report.add(Figure("18", "start-to-ready p50, stopped machine", start, "s", cold, "cold create"))
    if times["warm"]:
        warm = percentile(times["warm"], 50)
        report.add(Figure("18", "start-to-ready p50, stopped machine", start, "s", warm,
                          "warm-pool create"))  # fmt: skip
    else:
        report.note("18: no warm sample came from the pool")
    refused, ran = percentile(times["refused"], 50), percentile(times["exec"], 50)
    report.add(Figure("18", "exec on a stopped machine (MachineStopped) p50", refused, "s", ran,
                      "exec on a running machine", target="< 100 ms",
                      met=refused < 0.1))  # fmt: skip
    report.add(Figure("18", f"idle memory of {n} stopped machines (PSS)", stopped[0], "MB",
                      running[0], f"{n} running"))  # fmt: skip
    report.note(
        f"18: host MemAvailable {running[1]:.0f} MB with {n} running, {stopped[1]:.0f} MB "
        f"with them stopped ({stopped[1] - running[1]:+.0f} MB; the host is shared)"
    )
