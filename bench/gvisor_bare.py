"""Benchmark 27's floor for a resume: a bare ``runsc restore`` of a paused machine's own memory
image, outside fleetd, in the same run.

A copy of the machine's image (taken while it is paused, off the clock) is restored with the
same runsc, platform and flags as the provider's (``Runsc.argv``), from a copy of the machine's
own spec (its sources staged as the provider stages them: providers/gvisor/root.py), in a
network namespace of its own with nothing in it (no pasta, no egress table, no cgroup), under
a runsc state directory of the benchmark's. Timed: the ``runsc restore --detach`` command, to
its end (the sandbox restored and running); then, reported beside it, its first ``runsc exec``
(``echo ok``), and, for a fork's floor, a ``runsc checkpoint --leave-running`` of the restored
copy (a fork is its source's checkpoint, then its restore). The restored copy is killed after,
its daemon never woken (it stays parked, as the image has it, so it never reaches NATS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from contracts.models import GvisorPlatform
from providers.gvisor import (
    BUNDLE,
    CHECKPOINT_FLAGS,
    IMAGE_DIR,
    STAGE_SCRIPT,
    Runsc,
    find_sandbox,
    forget_state,
    staged_bundle,
    wait_gone,
)

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
_TIMEOUT_S = 120.0


def copy_image(machine_dir: Path, to: Path) -> Path:
    """The paused machine's image and spec, copied to ``to`` (made anew): what
    ``restore`` takes."""
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    shutil.copytree(machine_dir / IMAGE_DIR, to / "image")
    (to / "bundle").mkdir()
    shutil.copyfile(machine_dir / BUNDLE / "config.json", to / "bundle" / "config.json")
    return to


@dataclass(frozen=True)
class Bare:
    """Seconds of a bare restore, of its first exec, and (if asked) of a checkpoint of the
    restored sandbox, left running, as a fork's take checkpoints its source."""

    restored: float
    first_exec: float
    checkpoint: float | None = None


async def restore(copy: Path, platform: GvisorPlatform, n: int, *,
                  checkpoint: bool = False) -> Bare:  # fmt: skip
    """The copy restored bare, timed (``Bare``); the copy and its sandbox gone after."""
    runsc = Runsc("runsc", platform, copy)  # ``copy/gvisor``: a state directory of its own
    runsc.state.mkdir(exist_ok=True)
    cid = f"bench-bare-{n}"
    bundle = copy / "bundle"
    given, staging = staged_bundle(bundle)
    script = "mount -t proc proc /proc/sys/net || exit 1; "
    script += f'{STAGE_SCRIPT if staging else ""}exec "$@"'
    argv = ["unshare", "--net", "--mount", "/bin/sh", "-c", script, "fleet-bench", *staging,
            *runsc.argv("restore", "--image-path", str(copy / "image"), "--detach",
                        "--bundle", str(given), cid)]  # fmt: skip
    pid = None
    log = copy / "runsc.log"
    try:
        # Its messages to a file: the sandbox it leaves running keeps what it was given.
        with log.open("wb") as out:
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=_ENV,
                start_new_session=True,
            )  # fmt: skip
            async with asyncio.timeout(_TIMEOUT_S):
                code = await proc.wait()
        restored = time.perf_counter() - t0
        if code != 0:
            said = log.read_text(errors="replace")[-300:]
            raise RuntimeError(f"bare runsc restore: exit {code}: {said}")
        pid = await asyncio.to_thread(find_sandbox, bundle)
        if pid is None:
            raise RuntimeError("bare runsc restore: no sandbox after it")
        t0 = time.perf_counter()
        run = await asyncio.to_thread(runsc.run, "exec", cid, "echo", "ok", inside=pid,
                                      timeout_s=_TIMEOUT_S)  # fmt: skip
        first_exec = time.perf_counter() - t0
        if run.stdout != "ok\n":
            raise RuntimeError(f"bare runsc exec: exit {run.returncode}: {run.stderr[-300:]}")
        took = await _checkpoint(runsc, cid, pid, copy / "again") if checkpoint else None
        return Bare(restored, first_exec, took)
    finally:
        await asyncio.to_thread(_end, runsc, cid, bundle, pid)
        await asyncio.to_thread(shutil.rmtree, copy, True)


async def _checkpoint(runsc: Runsc, cid: str, pid: int, image: Path) -> float:
    """``runsc checkpoint --leave-running`` of the restored sandbox into ``image``, with the
    provider's flags (providers/gvisor/fork.py's take): its seconds."""
    image.mkdir()
    t0 = time.perf_counter()
    argv = ["--image-path", str(image), *CHECKPOINT_FLAGS, "--leave-running", cid]
    got = await runsc.run_async("checkpoint", *argv, inside=pid, timeout_s=_TIMEOUT_S)
    took = time.perf_counter() - t0
    if got.returncode != 0:
        raise RuntimeError(f"bare runsc checkpoint: exit {got.returncode}: {got.stderr[-300:]}")
    return took


def _end(runsc: Runsc, cid: str, bundle: Path, pid: int | None) -> None:
    pid = pid or find_sandbox(bundle)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
    forget_state(runsc, cid)
