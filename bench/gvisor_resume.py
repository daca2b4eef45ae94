"""Benchmark 27's small machines: resume and fork with memory against a bare ``runsc restore`` of
the same image, and 8 pauses and resumes at once against one, in the same run and the same
stack (bench/gvisor.py's).

``MANY`` idle gvisor machines (nothing started in them: a supervisor and its daemon; an image
well under 64 MB) are made at once, off the clock.

- resume p50, small machine: ``machines.pause`` (off the clock), the image copied (off the
  clock), then ``machines.resume`` to the first ``machines.exec`` answered (goal: at most 1.5x),
  against a bare ``runsc restore`` of the copy (bench/gvisor_bare.py); the two alternate.
- fork with memory p50, small machine: ``machines.fork {count: 1, memory: true}`` to the fork's
  ``machine.ready`` (goal: at most 2x), against the same bare restores; beside it, the floor
  of a fork's two steps: a bare ``runsc checkpoint --leave-running`` of each restored copy
  (as a take checkpoints its source) plus its restore.
- 8 at once: ``machines.pause`` of one machine to its ``machine.paused``, then of all ``MANY``
  at once to the last one's (goal: at most 2x); then ``machines.resume`` of one to its first
  exec answered, then of all at once to the last one's first exec (goal: at most 2x). A pause
  refused or a machine failed is counted, and makes the row missed. Beside it, the host's
  floor: one bare ``runsc restore`` of a copy of a paused machine's image, then ``MANY`` at
  once (each machine's own copy): what the cores allow before fleetd adds anything.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from bench import gvisor_bare, gvisor_fork
from bench.common import Report
from bench.gvisor import WAIT_S, _clear, _event, _first_exec
from bench.gvisor_steps import Steps, figure, p50
from bench.warm_pool import _Side
from contracts.gateway.rpc import MACHINES_CREATE, MACHINES_GET, CreateMachineParams
from contracts.gateway.stop import MACHINES_PAUSE, MACHINES_RESUME
from contracts.gateway.types import MachineRef
from providers.gvisor import IMAGE_DIR

MANY = 8
#: The image the goal is stated for: at most this.
SMALL_MB = 64.0


async def make(side: _Side) -> list[str]:
    """``MANY`` idle gvisor machines, created at once, ready."""
    instances = [side.instances.pop() for _ in range(MANY)]
    made = await side.gw.batch(
        MACHINES_CREATE, [CreateMachineParams(instance_id=i, runtime="gvisor") for i in instances]
    )
    ids = [m.id for m in made]
    await side.watch.wait_all("ready", ids, timeout_s=WAIT_S)
    failed = {m: side.watch.failed[m] for m in ids if m in side.watch.failed}
    if failed:
        raise RuntimeError(f"small machines failed: {failed}")
    return ids


async def _pause(side: _Side, mids: list[str]) -> float:
    """Every machine of ``mids`` paused at once: until the last one's ``machine.paused`` (one
    refused: RuntimeError)."""
    for mid in mids:
        _clear(side, mid, "paused", "pause-refused", "resumed", "ready")
    t0 = time.perf_counter()
    await asyncio.gather(*(side.gw.call(MACHINES_PAUSE, MachineRef(machine_id=m)) for m in mids))
    done = await asyncio.gather(*(_event(side, m, "paused", refused="pause-refused")
                                  for m in mids))  # fmt: skip
    return max(done) - t0


async def _resume(side: _Side, mids: list[str]) -> float:
    """Every machine of ``mids`` resumed at once: until the last one answers an exec."""
    t0 = time.perf_counter()
    await asyncio.gather(*(side.gw.call(MACHINES_RESUME, MachineRef(machine_id=m)) for m in mids))
    done = await asyncio.gather(*(_first_exec(side, m) for m in mids))
    return max(done) - t0


def _image_mb(side: _Side, mid: str) -> float:
    image = side.up.data_dir / "machines" / mid / IMAGE_DIR
    return sum(f.stat().st_size for f in image.rglob("*") if f.is_file()) / 1e6


async def against_bare(side: _Side, mid: str, rounds: int, scratch: Path,
                       times: dict[str, list[float]]) -> None:  # fmt: skip
    """Resumes of ``mid`` and bare restores of its image, alternating, into ``times``."""
    platform = (await side.gw.call(MACHINES_GET, MachineRef(machine_id=mid))).runtime_platform
    assert platform is not None, f"{mid} is a gvisor machine"
    for n in range(rounds):
        await _pause(side, [mid])
        times.setdefault("small image MB", []).append(_image_mb(side, mid))
        machine_dir = side.up.data_dir / "machines" / mid
        copy = await asyncio.to_thread(gvisor_bare.copy_image, machine_dir, scratch / str(n))
        t0 = time.perf_counter()
        await side.gw.call(MACHINES_RESUME, MachineRef(machine_id=mid))
        times.setdefault("small resume", []).append(await _first_exec(side, mid) - t0)
        times.setdefault("small restored", []).append(await _event(side, mid, "resumed") - t0)
        bare = await gvisor_bare.restore(copy, platform, n, checkpoint=True)
        times.setdefault("bare restore", []).append(bare.restored)
        times.setdefault("bare first exec", []).append(bare.first_exec)
        times.setdefault("bare checkpoint", []).append(bare.checkpoint or 0.0)


async def forks(side: _Side, mid: str, rounds: int, times: dict[str, list[float]]) -> None:
    after = times.setdefault("small restored to ready", [])
    for _ in range(rounds):
        took = (await gvisor_fork._fork(side, mid, 1, True, after))[0]
        times.setdefault("small fork", []).append(took)


async def at_once(side: _Side, mids: list[str], rounds: int, scratch: Path,
                  times: dict[str, list[float]]) -> None:  # fmt: skip
    """One pause and resume, then ``MANY`` at once, ``rounds`` times, into ``times``; with
    the host's floor: one bare ``runsc restore`` of a copy of a paused machine's image, then
    ``MANY`` of them at once (copies of each machine's, taken while paused, off the clock)."""
    platform = (await side.gw.call(MACHINES_GET, MachineRef(machine_id=mids[0]))).runtime_platform
    assert platform is not None, f"{mids[0]} is a gvisor machine"
    for r in range(rounds):
        times.setdefault("one pause", []).append(await _pause(side, mids[:1]))
        times.setdefault("one resume", []).append(await _resume(side, mids[:1]))
        times.setdefault("many pause", []).append(await _pause(side, mids))
        copies = [await asyncio.to_thread(gvisor_bare.copy_image,
                                          side.up.data_dir / "machines" / mid,
                                          scratch / f"{r}-{n}")
                  for n, mid in enumerate([mids[0], *mids])]  # fmt: skip
        times.setdefault("many resume", []).append(await _resume(side, mids))
        one = await gvisor_bare.restore(copies[0], platform, 100 * r)
        times.setdefault("one bare restore", []).append(one.restored)
        t0 = time.perf_counter()
        await asyncio.gather(*(gvisor_bare.restore(c, platform, 100 * r + n)
                               for n, c in enumerate(copies[1:], 1)))  # fmt: skip
        times.setdefault("many bare restores", []).append(time.perf_counter() - t0)


def report_small(report: Report, steps: Steps, times: dict[str, list[float]], on: str) -> None:
    """The four rows; a pause refused or a machine failed at once makes its step missing."""
    bare = p50(times, "bare restore")
    image = max(times.get("small image MB") or [0.0])
    small = f"{on}; image {image:.0f} MB (max)"
    resume = p50(times, "small resume")
    figure(report, steps, "small resume", "resume p50, small gvisor machine, to first exec",
           resume, "s", bare, "bare runsc restore of its image", target="<= 1.5x",
           met=resume is not None and bare is not None and resume <= 1.5 * bare
           and image <= SMALL_MB, note=small)  # fmt: skip
    fork = p50(times, "small fork")
    floor = ""
    if (taken := p50(times, "bare checkpoint")) and bare and fork:
        floor = (f"; its floor, a bare runsc checkpoint (--leave-running, as a take's) "
                 f"{taken * 1000:.0f} ms plus that restore: {taken + bare:.3f} s, the fork "
                 f"{fork / (taken + bare):.2f}x that")  # fmt: skip
    figure(report, steps, "small fork", "fork with memory p50, small machine, to ready", fork,
           "s", bare, "bare runsc restore of its image", target="<= 2x",
           met=fork is not None and bare is not None and fork <= 2 * bare,
           note=small + floor)  # fmt: skip
    bare_one, bare_many = p50(times, "one bare restore"), p50(times, "many bare restores")
    floor = ""
    if bare_one and bare_many:
        floor = (f"; the host's floor: {MANY} bare runsc restores at once "
                 f"{bare_many * 1000:.0f} ms, {bare_many / bare_one:.2f}x one "
                 f"({bare_one * 1000:.0f} ms), on {os.cpu_count()} cores")  # fmt: skip
    for verb in ("pause", "resume"):
        many, one = p50(times, f"many {verb}"), p50(times, f"one {verb}")
        figure(report, steps, "at once", f"{MANY} {verb}s at once, all done p50", many, "s",
               one, f"one {verb}", target="<= 2x",
               met=many is not None and one is not None and many <= 2 * one,
               note=f"{on}; none refused or failed{floor if verb == 'resume' else ''}")  # fmt: skip
    ms = {k: (p50(times, k) or 0) * 1000 for k in ("bare first exec", "small restored",
                                                     "small restored to ready")}  # fmt: skip
    report.note(f"27: small machines: a bare restore's first runsc exec p50 "
                f"{ms['bare first exec']:.0f} ms; machines.resume to machine.resumed p50 "
                f"{ms['small restored']:.0f} ms; a fork's machine.provisioned to ready p50 "
                f"{ms['small restored to ready']:.0f} ms")  # fmt: skip
