"""Benchmark 27: gvisor machines (``local``, runsc): pause and resume with memory, against
stopping and starting a namespaces machine, and what gVisor costs, all in the same run.

One `fleet up` stack, its NATS on the machines' bridge gateway (gVisor's network stack has a
loopback of its own), each machine created with its runtime named (``machines.create
{runtime}``). A background process of each measured machine (``machines.process.start``)
holds 256 MiB of random data, touched.

- pause p50: ``machines.pause`` to ``machine.paused`` of the gvisor machine (goal: at most
  1 s), against ``machines.stop`` to ``machine.processes-ended`` of the namespaces machine
  holding the same 256 MiB (a stop is what a namespaces machine has instead); and the host
  memory of the paused machine, the PSS of every runsc process left for it (goal: at most
  5 MiB, expected none), against the same of it running.
- resume p50: ``machines.resume`` to the first ``machines.exec`` answered (goal: at most
  300 ms), against ``machines.start`` to the first exec answered of the namespaces machine
  (whose holder then runs again, as every background process does, off the clock). Pauses and
  stops alternate, one machine at a time.
- reported, not goals: cold create-to-ready (``machine.ready``) under each runtime,
  alternating, without a warm pool; ``python3 -c pass`` through ``machines.exec`` under each.
  The gVisor platform the machines ran on is named in the figures' note.
- fork with memory (the first of 3 ready, and 10 forks) and create from a memory snapshot,
  each against namespaces machines made without memory: bench/gvisor_fork.py, on two
  machines of their own made after the pauses.

- a machine running a dev server and a Jupyter-style kernel (a loopback server and a client
  holding a connection to it) paused, resumed and forked with memory, each against the same of
  an idle gvisor machine, the server's answers, the PIDs and the kernel's counter checked after
  each: bench/gvisor_serving.py, on two machines of their own made after the forks.

- a gvisor create from the warm pool against a namespaces create from the warm pool:
  bench/gvisor_pool.py, on a stack of its own (its pools would make the creates above warm).

- reported, not goals: ``git status`` in a 10,000-file repository and a 100 MiB HTTP download,
  timed inside the same two machines (bench/gvisor_costs.py), before the pauses.

- a gvisor create while root in another gvisor machine keeps 20,000 connections going at the
  egress proxy's door on the host (goal: at most 2x the create with the door idle, alternating):
  bench/gvisor_door.py, after the serving machine's rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiodocker

from bench import gvisor_costs, gvisor_door, gvisor_fork
from bench.common import Figure, Report, percentile, temp_dir
from bench.netns import BIG_MIB
from bench.outside import outside_host
from bench.procstat import cmdline, rss_mb, uss_pss_mb
from bench.stack import FleetUp, RpcError, servers
from bench.stop_start import machines_memory_mb
from bench.warm_pool import _Side
from contracts.gateway_rpc import (
    MACHINES_CREATE,
    MACHINES_EXEC,
    MACHINES_GET,
    MACHINES_PROCESS_START,
    CreateMachineParams,
)
from contracts.gateway_stop import MACHINES_PAUSE, MACHINES_RESUME, MACHINES_START, MACHINES_STOP
from contracts.gateway_types import MachineExecParams, MachineProcessStartParams, MachineRef
from contracts.models import Runtime
from controlplane.settings import Settings
from providers.docker import ensure_network
from providers.gvisor import IMAGE_DIR, container_id

#: The holder's mark in the machine's home, once its 256 MiB are allocated and touched.
HELD = "held-256"
#: Allocates and touches 256 MiB of random data, says so, then sleeps holding it.
HOLDER = f"""
import os, time
held = os.urandom(256 << 20)
open('{HELD}.tmp', 'w').write(str(len(held)))
os.replace('{HELD}.tmp', '{HELD}')
time.sleep(1e9)
"""
#: Under ptrace a daemon answers in seconds on a loaded host: calls get a minute.
STACK_ENV = {"FLEET_RPC_TIMEOUT_S": "60"}
#: Generous: a gvisor daemon's start traps every syscall.
WAIT_S = 300.0


async def _create(side: _Side, runtime: Runtime) -> tuple[str, float]:
    """A machine of ``runtime``, ready: its id and create-to-ready."""
    t0 = time.perf_counter()
    machine = await side.gw.call(
        MACHINES_CREATE, CreateMachineParams(instance_id=side.instances.pop(), runtime=runtime)
    )
    await side.watch.wait_all("ready", [machine.id], timeout_s=WAIT_S)
    if machine.id in side.watch.failed:
        raise RuntimeError(f"{runtime} machine {machine.id} failed: "
                           f"{side.watch.failed[machine.id]}")  # fmt: skip
    return machine.id, side.watch.seen["ready", machine.id] - t0


async def _made(side: _Side) -> str:
    return (await _create(side, "gvisor"))[0]


async def _event(side: _Side, mid: str, kind: str, refused: str = "") -> float:
    """When ``kind`` arrived for the machine (cleared before the call that causes it)."""
    async with asyncio.timeout(WAIT_S):
        while (kind, mid) not in side.watch.seen:
            if refused and (refused, mid) in side.watch.seen:
                raise RuntimeError(f"machine {mid}: {refused}")
            await asyncio.sleep(0.01)  # the arrival's own time is taken, not this poll's
    return side.watch.seen[kind, mid]


def _clear(side: _Side, mid: str, *kinds: str) -> None:
    for kind in kinds:
        side.watch.seen.pop((kind, mid), None)


async def _first_exec(side: _Side, mid: str) -> float:
    """Until an exec on the machine is answered: when (a machine that failed is an error)."""
    params = MachineExecParams(machine_id=mid, command=["echo", "ok"], timeout_s=30)
    async with asyncio.timeout(WAIT_S):
        while True:
            if mid in side.watch.failed:
                raise RuntimeError(f"machine {mid} failed: {side.watch.failed[mid]}")
            try:
                if (await side.gw.call(MACHINES_EXEC, params)).stdout == "ok\n":
                    return time.perf_counter()
            except RpcError:
                pass  # still pausing, resuming or booting: refused, try again
            await asyncio.sleep(0.01)


async def _hold(side: _Side, mid: str) -> None:
    """Start the 256 MiB holder; until it holds them."""
    await side.gw.call(MACHINES_PROCESS_START, MachineProcessStartParams(
        machine_id=mid, command=["python3", "-c", HOLDER], tag="holder"))  # fmt: skip
    await _held(side, mid)


async def _held(side: _Side, mid: str) -> None:
    mark = side.up.data_dir / "machines" / mid / "home" / HELD
    async with asyncio.timeout(WAIT_S):
        while not mark.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def runsc_memory_mb(mid: str) -> float:
    """The PSS (RSS where PSS cannot be read) of every runsc process of the machine."""
    cid, total = container_id(mid), 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = " ".join(cmdline(int(entry.name)))
        if "runsc" in argv and cid in argv:
            pss = uss_pss_mb(int(entry.name))[1]
            total += pss if pss is not None else (rss_mb(int(entry.name)) or 0.0)
    return total


async def _pause_resume(side: _Side, mid: str, times: dict[str, list[float]], kind: str = "",
                        paused: Callable[[], None] = lambda: None) -> None:  # fmt: skip
    """One pause and one resume of the gvisor machine, timed; its host memory while paused.
    ``kind`` prefixes the keys of ``times``; ``paused`` runs, off the clock, while paused."""
    _clear(side, mid, "paused", "pause-refused", "resumed", "ready")
    t0 = time.perf_counter()
    await side.gw.call(MACHINES_PAUSE, MachineRef(machine_id=mid))
    took = await _event(side, mid, "paused", refused="pause-refused") - t0
    times.setdefault(f"{kind}pause", []).append(took)
    times.setdefault(f"{kind}paused MB", []).append(runsc_memory_mb(mid))
    image = side.up.data_dir / "machines" / mid / IMAGE_DIR
    size = sum(f.stat().st_size for f in image.rglob("*") if f.is_file()) / 1e6
    times.setdefault(f"{kind}image MB", []).append(size)
    paused()
    t0 = time.perf_counter()
    await side.gw.call(MACHINES_RESUME, MachineRef(machine_id=mid))
    times.setdefault(f"{kind}resume", []).append(await _first_exec(side, mid) - t0)
    times.setdefault(f"{kind}restored", []).append(await _event(side, mid, "resumed") - t0)


async def _stop_start(side: _Side, mid: str, times: dict[str, list[float]]) -> None:
    """One stop and one start of the namespaces machine, timed; its holder back after."""
    _clear(side, mid, "processes-ended", "ready")
    t0 = time.perf_counter()
    await side.gw.call(MACHINES_STOP, MachineRef(machine_id=mid))
    times["stop"].append(await _event(side, mid, "processes-ended") - t0)
    times["stopped MB"].append(machines_memory_mb(side.up.data_dir, [mid]))
    (side.up.data_dir / "machines" / mid / "home" / HELD).unlink()
    t0 = time.perf_counter()
    await side.gw.call(MACHINES_START, MachineRef(machine_id=mid))
    times["start"].append(await _first_exec(side, mid) - t0)
    await _held(side, mid)  # off the clock: it holds its 256 MiB again before the next stop


async def _python_pass(side: _Side, mid: str) -> float:
    t0 = time.perf_counter()
    done = await side.gw.call(MACHINES_EXEC, MachineExecParams(
        machine_id=mid, command=["python3", "-c", "pass"], timeout_s=120))  # fmt: skip
    if done.exit_code != 0:
        raise RuntimeError(f"python3 -c pass on {mid}: {done.exit_code} {done.stderr}")
    return time.perf_counter() - t0


async def run(report: Report, quick: bool) -> None:
    cycles, creates, execs = (2, 1, 3) if quick else (5, 3, 10)
    rounds = 2 if quick else 5
    door_rounds = 2 if quick else 3
    print(f"[27] gvisor: {cycles} pauses and resumes (256 MiB held) against as many stops and "
          f"starts of a namespaces machine; {creates} cold creates and {execs} python3 -c pass "
          f"under each runtime; {rounds} forks and creates from a snapshot with memory against "
          f"as many without; {rounds} pauses, resumes and forks of a serving gvisor machine "
          f"against as many of an idle one; {door_rounds} gvisor creates beside "
          f"{gvisor_door.CONNECTIONS:,} connections at the egress proxy's door against as "
          "many with it idle")  # fmt: skip
    from bench import gvisor_serving  # it imports this module's helpers

    async with aiodocker.Docker() as docker:
        gateway = await ensure_network(docker, Settings().docker_network)
    times: dict[str, list[float]] = {}
    with (
        temp_dir() as root,
        outside_host(root / "outside", big_mib=BIG_MIB) as outside,
        servers(root, host=gateway) as (ns, vk),
        FleetUp(root, ns.url, vk.url, STACK_ENV) as up,
    ):
        side = _Side(up, ns.url)
        try:
            await side.start(2 * creates + 3 + gvisor_fork.MANY + gvisor_fork.SPARE
                             + gvisor_serving.INSTANCES + 1 + 2 * door_rounds)  # fmt: skip
            url = outside.url("big.bin")
            platform = await _measure(side, cycles, creates, execs, url, times)
            nsf = (await _create(side, "namespaces"))[0]
            lost = await gvisor_fork.measure(side, partial(_made, side), nsf, rounds, times)
            kept = await gvisor_serving.measure(side, partial(_made, side), rounds, times)
            flood = await gvisor_door.measure(side, await _made(side), door_rounds, times)
        finally:
            await side.close()
    _report(report, times, platform)
    gvisor_costs.report_costs(report, times, f"platform {platform}")
    gvisor_fork.report_forks(report, times, f"platform {platform}", lost)
    gvisor_serving.report_serving(report, times, f"platform {platform}", kept)
    gvisor_door.report_door(report, times, f"platform {platform}; the attacker got: {flood}")
    from bench import gvisor_pool  # it imports this module's helpers

    await gvisor_pool.run(report, quick)


async def _measure(
    side: _Side, cycles: int, creates: int, execs: int, url: str, times: dict[str, list[float]]
) -> str:
    """Every sample, into ``times``; the gvisor machines' platform."""
    for key in ("gvisor create", "namespaces create", "pause", "paused MB", "image MB", "resume",
                "restored", "stop", "stopped MB", "start", "gvisor python",
                "namespaces python"):  # fmt: skip
        times[key] = []
    nsm, _ = await _create(side, "namespaces")  # unmeasured: the services' caches warm
    gvm = ""
    for _ in range(creates):
        mid, took = await _create(side, "gvisor")
        times["gvisor create"].append(took)
        gvm = gvm or mid
        times["namespaces create"].append((await _create(side, "namespaces"))[1])
    platform = (await side.gw.call(MACHINES_GET, MachineRef(machine_id=gvm))).runtime_platform
    for _ in range(execs):
        times["gvisor python"].append(await _python_pass(side, gvm))
        times["namespaces python"].append(await _python_pass(side, nsm))
    machines = {"gvisor": gvm, "namespaces": nsm}
    await gvisor_costs.measure(side, machines, url, max(2, creates), times)
    await _hold(side, gvm)
    await _hold(side, nsm)
    times["running MB"] = [runsc_memory_mb(gvm)]
    for _ in range(cycles):
        await _pause_resume(side, gvm, times)
        await _stop_start(side, nsm, times)
    return str(platform)


def _report(report: Report, times: dict[str, list[float]], platform: str) -> None:
    p50 = {k: percentile(v, 50) for k, v in times.items() if v}
    on = f"platform {platform}"
    pause, resume = p50["pause"], p50["resume"]
    report.add(Figure("27", "pause p50, gvisor machine holding 256 MiB", pause, "s", p50["stop"],
                      "namespaces stop, 256 MiB", target="<= 1 s", met=pause <= 1.0,
                      note=on))  # fmt: skip
    left = max(times["paused MB"])
    report.add(Figure("27", "host memory of a paused gvisor machine (max)", left, "MB",
                      times["running MB"][0], "running, 256 MiB held", target="<= 5 MiB",
                      met=left <= 5 * 1.048576, note="PSS of its runsc processes"))  # fmt: skip
    report.add(Figure("27", "resume p50, to the first exec answered", resume, "s", p50["start"],
                      "namespaces start to first exec", target="<= 300 ms",
                      met=resume <= 0.3, note=on))  # fmt: skip
    report.add(Figure("27", "cold create-to-ready p50, gvisor", p50["gvisor create"], "s",
                      p50["namespaces create"], "namespaces cold", note=on))  # fmt: skip
    report.add(Figure("27", "python3 -c pass through exec p50, gvisor", p50["gvisor python"], "s",
                      p50["namespaces python"], "namespaces", note=on))  # fmt: skip
    p95 = {k: percentile(times[k], 95) * 1000 for k in ("pause", "resume")}
    stopped = max(times["stopped MB"])
    report.note(f"27: pause p95 {p95['pause']:.0f} ms, resume p95 {p95['resume']:.0f} ms; "
                f"memory image p50 {p50['image MB']:.0f} MB; resume to machine.resumed (restored) "
                f"p50 {p50['restored'] * 1000:.0f} ms, the rest the daemon's reconnect; host "
                f"memory of the stopped namespaces machine {stopped:.1f} MB")  # fmt: skip
