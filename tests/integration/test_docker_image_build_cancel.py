"""A machine-image build cancelled half way (the provisioner stopping while a debootstrap runs)
leaves nothing running: the build's command and everything it started are killed. Real
processes; no Docker engine needed (the build's commands are plain subprocesses)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core import procinfo
from providers.docker_image import _run
from tests.waiters import wait_until


async def test_a_cancelled_build_step_kills_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # Like debootstrap: a process that starts others (here a grandchild sleep) and waits.
    script = f"sleep 300 & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"
    step = asyncio.create_task(_run(["sh", "-c", script]))
    await wait_until(pidfile.exists, timeout=10)
    child = int(pidfile.read_text())
    ticks = procinfo.start_ticks(child)
    assert procinfo.is_alive(child, ticks)
    step.cancel()
    await asyncio.gather(step, return_exceptions=True)
    assert step.cancelled()
    await wait_until(lambda: not procinfo.is_alive(child, ticks), timeout=10)
