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
  5 MiB, expected none), against the same of it running; noted beside it, what its kept
  network namespace holds (its pasta and the namespace's holder).
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

- a small machine's resume and fork with memory against a bare ``runsc restore`` of its own
  image, and 8 pauses and resumes at once against one: bench/gvisor_resume.py, on 8 idle
  machines of their own made at once, first of all.

- a gvisor create from the warm pool against a namespaces create from the warm pool:
  bench/gvisor_pool.py, on a stack of its own (its pools would make the creates above warm).

Every step has a bound of its own, and ``--quick`` a budget of them all (``QUICK_BUDGET_S``):
a step that fails or runs out has its figures reported missing with the reason, and the
others are still measured (bench/gvisor_steps.py). The provider's own timings of each
checkpoint, restore and fork (its log's ``*_ms``) are noted as p50s.

- reported, not goals: ``git status`` in a 10,000-file repository and a 100 MiB HTTP download,
  timed inside the same two machines (bench/gvisor_costs.py), after the pauses.

- a gvisor create while root in another gvisor machine keeps 20,000 connections going at the
  egress proxy's door on the host (goal: at most 2x the create with the door idle, alternating):
  bench/gvisor_door.py, after the forks' rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiodocker

from bench import gvisor_costs, gvisor_door, gvisor_fork
from bench.common import Report, percentile, temp_dir
from bench.gvisor_steps import Steps, figure, p50, provider_timings
from bench.netns import BIG_MIB
from bench.outside import outside_host
from bench.procstat import cmdline, rss_mb, uss_pss_mb
from bench.stack import FleetUp, RpcError, servers
from bench.stop_start import machines_memory_mb
from bench.warm_pool import _Side
from contracts.gateway.rpc import (
    MACHINES_CREATE,
    MACHINES_EXEC,
    MACHINES_GET,
    MACHINES_PROCESS_START,
    CreateMachineParams,
)
from contracts.gateway.stop import MACHINES_PAUSE, MACHINES_RESUME, MACHINES_START, MACHINES_STOP
from contracts.gateway.types import MachineExecParams, MachineProcessStartParams, MachineRef
from contracts.models import Runtime
from controlplane.settings import Settings
from providers.docker import ensure_network
from providers.gvisor import IMAGE_DIR, container_id
from providers.sandbox import NETNS_OF

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


def netns_memory_mb(mid: str) -> float:
    """The PSS of every process marked as the machine's network's (its pasta and, while it is
    paused, the holder of its namespace)."""
    want, total = f"{NETNS_OF}={mid}".encode(), 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and want in (entry / "environ").read_bytes().split(b"\0"):
                total += uss_pss_mb(int(entry.name))[1] or rss_mb(int(entry.name)) or 0.0
        except OSError:
            continue
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
    times.setdefault(f"{kind}paused netns MB", []).append(netns_memory_mb(mid))
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


#: --quick's budget for every step of the benchmark, the warm-pool stack's included.
QUICK_BUDGET_S = 380.0


async def run(report: Report, quick: bool) -> None:
    from bench import gvisor_resume, gvisor_serving  # they import this module's helpers

    cycles, creates, execs = (2, 1, 3) if quick else (5, 3, 10)
    rounds = 2 if quick else 5
    small, many = (3, 1) if quick else (5, 3)
    door_rounds = 2 if quick else 3
    print(f"[27] gvisor: {small} resumes of a small machine against as many bare runsc restores "
          f"of its image, {small} forks of it; {many} x {gvisor_resume.MANY} pauses and resumes "
          f"at once against one; {cycles} pauses and resumes (256 MiB held) against as many "
          f"stops and starts of a namespaces machine; {creates} cold creates and {execs} "
          f"python3 -c pass under each runtime; {rounds} forks and creates from a snapshot with "
          f"memory against as many without; {rounds} pauses, resumes and forks of a serving "
          f"gvisor machine against as many of an idle one; {door_rounds} gvisor creates beside "
          f"{gvisor_door.CONNECTIONS:,} connections at the egress proxy's door against as "
          "many with it idle")  # fmt: skip
    steps = Steps(QUICK_BUDGET_S if quick else None)
    times: dict[str, list[float]] = {}
    kept: dict[str, list[int]] = {}
    platform, lost, flood = "unknown", 0, ""
    try:
        async with aiodocker.Docker() as docker:
            gateway = await ensure_network(docker, Settings().docker_network)
        with (
            temp_dir() as root,
            outside_host(root / "outside", big_mib=BIG_MIB) as outside,
            servers(root, host=gateway) as (ns, vk),
            FleetUp(root, ns.url, vk.url, STACK_ENV) as up,
        ):
            side = _Side(up, ns.url)
            try:
                await side.start(2 * creates + 3 + gvisor_fork.MANY + gvisor_fork.SPARE
                                 + gvisor_serving.INSTANCES + gvisor_resume.MANY + 1
                                 + 1 + 2 * door_rounds)  # fmt: skip
                url = outside.url("big.bin")
                platform, lost, kept = await _steps(side, steps, quick, root, url, times)
                flood = await steps.run("door", 150 if quick else 600,
                                        _door(side, door_rounds, times)) or ""  # fmt: skip
            finally:
                await side.close()
                timings = provider_timings(up.data_dir / "logs")
    except Exception as exc:  # noqa: BLE001 - the stack itself: every figure missing, said why
        steps.skip("stack", f"{type(exc).__name__}: {str(exc)[:240]}")
        timings = ""
    on = f"platform {platform}"
    gvisor_resume.report_small(report, steps, times, on)
    _report(report, steps, times, on)
    gvisor_costs.report_costs(report, steps, times, on)
    gvisor_fork.report_forks(report, steps, times, on, lost)
    gvisor_serving.report_serving(report, steps, times, on, kept)
    gvisor_door.report_door(report, steps, times, f"{on}; the attacker got: {flood or 'nothing'}")
    if timings:
        report.note(f"27: the provider's timings p50 (ms), from its log: {timings}")
    from bench import gvisor_pool  # it imports this module's helpers

    await gvisor_pool.run(report, quick, steps)


async def _steps(
    side: _Side, steps: Steps, quick: bool, root: Path, url: str, times: dict[str, list[float]]
) -> tuple[str, int, dict[str, list[int]]]:
    """Every step on the stack, each bounded: the gvisor machines' platform, how many fork
    sources were lost, what the serving machine kept."""
    from bench import gvisor_resume, gvisor_serving  # they import this module's helpers

    cycles, creates, execs = (2, 1, 3) if quick else (5, 3, 10)
    rounds = 2 if quick else 5
    small, many = (3, 1) if quick else (5, 3)
    made = await steps.run("creates", 150, _creates(side, creates, execs, times))
    gvm, nsm, platform = made or ("", "", "unknown")
    mids = await steps.run("small machines", 120, gvisor_resume.make(side))
    if mids:
        await steps.run("small resume", 90 if quick else 240, gvisor_resume.against_bare(
            side, mids[0], small, root / "bare", times))  # fmt: skip
        await steps.run("small fork", 60 if quick else 180,
                        gvisor_resume.forks(side, mids[1], small, times))  # fmt: skip
        await steps.run(
            "at once",
            90 if quick else 300,
            gvisor_resume.at_once(side, mids, many, root / "bare-many", times),
        )
    else:
        for name in ("small resume", "small fork", "at once"):
            steps.skip(name, "not run: its machines were not made")
    if made:
        await steps.run("256 MiB pauses", 90 if quick else 300,
                        _pauses(side, gvm, nsm, cycles, times))  # fmt: skip
        await steps.run("costs", 60 if quick else 300,
                        gvisor_costs.measure(side, {"gvisor": gvm, "namespaces": nsm}, url,
                                             max(2, creates), times))  # fmt: skip
    else:
        for name in ("256 MiB pauses", "costs"):
            steps.skip(name, "not run: its machines were not made")
    serving = gvisor_serving.measure(side, partial(_made, side), rounds, times)
    kept = await steps.run("serving", 90 if quick else 400, serving)
    nsf = await steps.run("forks' namespaces machine", 60, _create(side, "namespaces"))
    lost = None
    if nsf:
        lost = await steps.run("forks", 120 if quick else 600, gvisor_fork.measure(
            side, partial(_made, side), nsf[0], rounds, times))  # fmt: skip
    else:
        steps.skip("forks", "not run: its namespaces machine was not made")
    return str(platform), lost or 0, kept or {}


async def _door(side: _Side, rounds: int, times: dict[str, list[float]]) -> str:
    """The door's creates, idle and flooded by a gvisor machine of its own: what the attacker
    got."""
    return await gvisor_door.measure(side, await _made(side), rounds, times)


async def _creates(side: _Side, creates: int, execs: int,
                   times: dict[str, list[float]]) -> tuple[str, str, str]:  # fmt: skip
    """Cold creates under each runtime and ``python3 -c pass`` in each, into ``times``; a
    gvisor and a namespaces machine made, and the gvisor machines' platform."""
    for key in ("gvisor create", "namespaces create", "gvisor python", "namespaces python"):
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
    return gvm, nsm, str(platform)


async def _pauses(side: _Side, gvm: str, nsm: str, cycles: int,
                  times: dict[str, list[float]]) -> None:  # fmt: skip
    """The 256 MiB holders started, then pauses and stops alternating, into ``times``."""
    for key in ("pause", "paused MB", "image MB", "resume", "restored", "stop", "stopped MB",
                "start"):  # fmt: skip
        times[key] = []
    await _hold(side, gvm)
    await _hold(side, nsm)
    times["running MB"] = [runsc_memory_mb(gvm)]
    for _ in range(cycles):
        await _pause_resume(side, gvm, times)
        await _stop_start(side, nsm, times)


def _report(report: Report, steps: Steps, times: dict[str, list[float]], on: str) -> None:
    pause, resume = p50(times, "pause"), p50(times, "resume")
    step = "256 MiB pauses"
    figure(report, steps, step, "pause p50, gvisor machine holding 256 MiB", pause, "s",
           p50(times, "stop"), "namespaces stop, 256 MiB", target="<= 1 s",
           met=pause is not None and pause <= 1.0, note=on)  # fmt: skip
    left = max(times["paused MB"]) if times.get("paused MB") else None
    running = times["running MB"][0] if times.get("running MB") else None
    figure(report, steps, step, "host memory of a paused gvisor machine (max)", left, "MB",
           running, "running, 256 MiB held", target="<= 5 MiB",
           met=left is not None and left <= 5 * 1.048576,
           note="PSS of its runsc processes")  # fmt: skip
    figure(report, steps, step, "resume p50, to the first exec answered", resume, "s",
           p50(times, "start"), "namespaces start to first exec", target="<= 300 ms",
           met=resume is not None and resume <= 0.3, note=on)  # fmt: skip
    figure(report, steps, "creates", "cold create-to-ready p50, gvisor",
           p50(times, "gvisor create"), "s", p50(times, "namespaces create"), "namespaces cold",
           note=on)  # fmt: skip
    figure(report, steps, "creates", "python3 -c pass through exec p50, gvisor",
           p50(times, "gvisor python"), "s", p50(times, "namespaces python"), "namespaces",
           note=on)  # fmt: skip
    if not (times.get("pause") and times.get("resume") and times.get("stopped MB")):
        return
    p95 = {k: percentile(times[k], 95) * 1000 for k in ("pause", "resume")}
    mid = {k: percentile(times[k], 50) for k in ("image MB", "restored")}
    stopped = max(times["stopped MB"])
    netns = max(times.get("paused netns MB") or [0.0])
    report.note(
        f"27: pause p95 {p95['pause']:.0f} ms, resume p95 {p95['resume']:.0f} ms; a paused "
        f"machine's kept network namespace (its pasta and a sleeping holder) PSS {netns:.1f} MB "
        f"(max); memory image p50 {mid['image MB']:.0f} MB; resume to machine.resumed "
        f"(restored) p50 {mid['restored'] * 1000:.0f} ms, the rest the daemon's reconnect; host "
        f"memory of the stopped namespaces machine {stopped:.1f} MB"
    )
