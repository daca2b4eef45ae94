"""Benchmark 18: stopping and starting machines (``local``).

- start-to-ready of a stopped machine (``machines.start`` to its ``machine.ready``), p50, on
  a stack with a warm pool of one (the start adopts a pooled sandbox, given the machine's
  home), against create-to-ready from that warm pool, sampled in the same run (goal: at most
  2x); and on a stack without a pool (a cold start) against a cold create. Two `fleet up`
  stacks as in benchmark 12; each makes N machines, which are stopped, then started one at a
  time, the warm stack's pool full again before each start (its refill is on no clock). A
  warm start counts only if it adopted a pooled sandbox (its ``pool-slot`` file names a new
  slot).
- idle host memory of N machines: the PSS of every process of the machines (each machine's
  root and its whole tree, read from /proc) with the N running and idle, against the same N
  stopped; and the host's MemAvailable in both states, which the other users of a shared host
  move too (a note, not the figure).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import NamedTuple

from bench.common import Figure, Report, percentile
from bench.procstat import children, rss_mb, uss_pss_mb
from bench.stack import RpcError
from bench.warm_pool import _pool_full, _Side, warm_and_cold
from contracts.errors import MachineStopped
from contracts.gateway.rpc import MACHINES_EXEC
from contracts.gateway.stop import MACHINES_START, MACHINES_STOP
from contracts.gateway.types import MachineExecParams, MachineRef
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


class Made(NamedTuple):
    warm: list[str]
    cold: list[str]


def _slot(side: _Side, mid: str) -> str | None:
    """The pool slot the machine's sandbox came from, if it did."""
    path = side.up.data_dir / "machines" / mid / POOL_SLOT_FILE
    return path.read_text() if path.exists() else None


async def _creates(warm: _Side, cold: _Side, n: int, times: dict[str, list[float]]) -> Made:
    """``n`` creates on each stack, alternating; the machines of each (to be stopped)."""
    made = Made([], [])
    for _ in range(n):
        await _pool_full(warm.up.data_dir, 1)
        mid, marks = await warm.sample()
        if _slot(warm, mid) is not None:
            times["warm"].append(marks["ready"])
        made.warm.append(mid)
        await _pool_full(warm.up.data_dir, 1)
        mid, marks = await cold.sample()
        times["cold"].append(marks["ready"])
        made.cold.append(mid)
    return made


async def _starts(warm: _Side, cold: _Side, made: Made, times: dict[str, list[float]],
                  stages: dict[str, list[float]]) -> int:  # fmt: skip
    """Each stopped machine started, alternating between the stacks, the warm one's pool full
    before each; how many warm starts did not adopt a pooled sandbox (left out)."""
    missed = 0
    for w, c in zip(made.warm, made.cold, strict=True):
        await _pool_full(warm.up.data_dir, 1)
        before = _slot(warm, w)
        marks = await _start_to_ready(warm, w)
        if _slot(warm, w) not in (None, before):
            times["start"].append(marks["ready"])
            for s, t in marks.items():
                stages[s].append(t)
        else:
            missed += 1
        times["cold start"].append((await _start_to_ready(cold, c))["ready"])
    return missed


async def _stop_all(side: _Side, ids: list[str]) -> None:
    for mid in ids:
        await side.gw.call(MACHINES_STOP, MachineRef(machine_id=mid))
    await _all_gone(side.up.data_dir, ids)


async def run(report: Report, quick: bool) -> None:
    n = 3 if quick else 10
    print(f"[18] stop/start: {n} stopped machines started with a warm pool and {n} without, "
          f"against {n} warm and {n} cold creates")  # fmt: skip
    async with warm_and_cold(n + 1) as (warm, cold):
        cup = cold.up
        times: dict[str, list[float]] = {"warm": [], "cold": [], "start": [], "cold start": []}
        stages: dict[str, list[float]] = {s: [] for s in START_STAGES}
        made = await _creates(warm, cold, n, times)
        await asyncio.sleep(SETTLE_S)  # off the clock: idle, not starting
        running = _idle_memory(cup.data_dir, made.cold)
        await _stop_all(warm, made.warm)
        await _stop_all(cold, made.cold)
        await asyncio.sleep(SETTLE_S)
        stopped = _idle_memory(cup.data_dir, made.cold)
        times["refused"] = await _execs(cold, made.cold, refused=True)
        missed = await _starts(warm, cold, made, times, stages)
        times["exec"] = await _execs(cold, made.cold, refused=False)
    _report(report, n, times, running, stopped)
    report.note("18: warm start stages p50 after the call: " + ", ".join(
        f"{s} {percentile(v, 50) * 1000:.0f} ms" for s, v in stages.items() if v))  # fmt: skip
    if missed:
        report.note(f"18: {missed} warm start(s) did not adopt a pooled sandbox (left out)")


def _report(
    report: Report,
    n: int,
    times: dict[str, list[float]],
    running: tuple[float, float],
    stopped: tuple[float, float],
) -> None:
    cold_start, cold = percentile(times["cold start"], 50), percentile(times["cold"], 50)
    report.add(Figure("18", "start-to-ready p50, stopped machine, no pool", cold_start, "s",
                      cold, "cold create"))  # fmt: skip
    if times["warm"] and times["start"]:
        start, warm = percentile(times["start"], 50), percentile(times["warm"], 50)
        report.add(Figure("18", "start-to-ready p50, stopped machine, warm pool", start, "s",
                          warm, "warm-pool create", target="<= 2x",
                          met=start <= 2 * warm))  # fmt: skip
    else:
        report.note("18: no warm create or no warm start came from the pool")
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
