"""SIGTERM drains: a service process finishes (and acks) what it is doing before it exits."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from contracts.bus import subjects
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local import stop_all_local
from tests.conftest import ADMIN_TOKEN
from tests.waiters import wait_until


class CloneMarks:
    """Where the slow git shim marks each clone it starts: in the machine's own home, the one
    place a sandboxed machine may write that the test can read."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def marks(self) -> list[Path]:
        return sorted(self.data_dir.glob("machines/*/home/.clone-started"))

    def started(self) -> bool:
        return bool(self.marks())


@pytest.fixture
def slow_clones(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CloneMarks:
    """Daemons run `git clone` through a shim that first marks the start, then takes 2 s. The
    shim lives in `shim/`, which the settings share (read-only) with sandboxed machines."""
    real_git = shutil.which("git")
    assert real_git is not None
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir(exist_ok=True)
    (shim_dir / "git").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" clone "*) echo start >> "$HOME/.clone-started"; sleep 2 ;; esac\n'
        f'exec "{real_git}" "$@"\n'
    )
    (shim_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")
    return CloneMarks(settings.data_path)


async def test_sigterm_lets_the_setup_pusher_finish_its_clone(
    settings: Settings, bus: Bus, bare_repo: Path, slow_clones: CloneMarks, tmp_path: Path
) -> None:
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.provisioner.__main__ import build as provisioner

    log = tmp_path / "setup_pusher.log"
    env = {**os.environ, **settings.to_env(), "FLEET_LOG_LEVEL": "info"}
    async with AsyncExitStack() as es:
        es.callback(stop_all_local, settings.data_path)
        for build in (provisioner, prober, gateway):
            await build(settings, es)
        with open(log, "wb") as out:  # noqa: ASYNC230 - a local file, opened once
            pusher = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.setup_pusher", env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        es.push_async_callback(_reap, pusher)
        client = FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN)
        es.push_async_callback(client.close)

        inst = await client.create_instance("drain")
        await client.add_repo(inst.id, str(bare_repo), "main", "app")
        machine = await client.create_machine(inst.id)
        await wait_until(slow_clones.started, timeout=30)  # the clone is under way...
        pusher.send_signal(signal.SIGTERM)  # ...when the service is asked to stop
        assert await asyncio.wait_for(pusher.wait(), 30) == 0, log.read_text()

        machine = await client.wait_for(machine.id, {"ready", "failed"}, timeout_s=30)
        assert machine.status is MachineStatus.READY, machine.status_reason
        marks = slow_clones.marks()
        assert len(marks) == 1  # one machine...
        assert len(marks[0].read_text().splitlines()) == 1  # ...one clone: finished, not redone
        info = await bus.js.consumer_info(subjects.STREAM_NAME, "setup_pusher")
        assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
        assert "consumer.draining" in log.read_text()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
