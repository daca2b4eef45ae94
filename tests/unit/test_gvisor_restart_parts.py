"""A gvisor machine's daemon restart (``machines.restart``) without a sandbox: the supervisor's
``SIGHUP`` waits, for a sandbox just started, until its daemon holds NATS (seen from a stand-in
for its pasta), and is sent at once to an older one. runsc is a stand-in that writes down what
it was asked. On a real sandbox:
tests/integration/test_gvisor_fork_memory.py::test_a_restart_of_a_machine_just_started_restarts_its_daemon."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from base import procinfo
from providers.gvisor import Runsc, pause
from providers.gvisor.pause import SUPERVISOR_START_S, restart_daemon
from providers.sandbox import pasta_record
from tests.waiters import wait_until

#: Connects to 127.0.0.1:argv[1] and holds it until killed: the daemon's connection, as its
#: pasta holds it on the host.
PASTA = r"""
import signal, socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
signal.pause()
"""


@pytest.fixture
def sandbox() -> Iterator[int]:
    """A process started now, as the machine's sandbox."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _runsc(tmp_path: Path) -> tuple[Runsc, Path]:
    asked = tmp_path / "asked"
    stand_in = tmp_path / "runsc"
    stand_in.write_text(f'#!/bin/sh\necho "$@" >> {asked}\n')
    stand_in.chmod(0o755)
    return Runsc(str(stand_in), "ptrace", tmp_path), asked


def _the_machine(monkeypatch: pytest.MonkeyPatch, sandbox: int) -> Path:
    monkeypatch.setattr(pause, "sandbox_pid", lambda _: sandbox)
    monkeypatch.setattr(pause, "running_container", lambda _, machine_id: f"c-{machine_id}")
    return Path("/nonexistent/machines/m-young")


async def test_a_young_sandboxs_restart_waits_for_its_daemon_to_hold_nats(
    tmp_path: Path, sandbox: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    runsc, asked = _runsc(tmp_path)
    machine_dir = _the_machine(monkeypatch, sandbox)
    looks = 0
    seen = pause.nats_held

    def counted(*args: object) -> int:
        nonlocal looks
        looks += 1
        return seen(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pause, "nats_held", counted)
    with socket.create_server(("127.0.0.1", 0)) as nats:
        port = nats.getsockname()[1]
        restart = asyncio.create_task(
            restart_daemon(runsc, machine_dir, "m-young", ["m-young"], {port})
        )
        await wait_until(lambda: looks >= 3, timeout=30)
        # No signal while nothing holds NATS.
        assert not restart.done()
        assert not asked.exists()
        pasta = await asyncio.create_subprocess_exec(sys.executable, "-c", PASTA, str(port))
        try:
            record = pasta_record(tmp_path, "m-young")
            record.parent.mkdir(parents=True)
            record.write_text(f"{pasta.pid} {procinfo.start_ticks(pasta.pid)}\n")
            assert await asyncio.wait_for(restart, timeout=30)
        finally:
            pasta.kill()
            await pasta.wait()
    assert asked.read_text().split()[-3:] == ["kill", "c-m-young", "HUP"]


async def test_an_older_sandboxs_restart_is_signalled_at_once(
    tmp_path: Path, sandbox: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its daemon holds nothing (it hangs, or crashed): what a restart is for."""
    runsc, asked = _runsc(tmp_path)
    machine_dir = _the_machine(monkeypatch, sandbox)
    monkeypatch.setattr(procinfo, "age_s", lambda _: SUPERVISOR_START_S + 1)

    def never(*_: object) -> int:
        raise AssertionError("an older sandbox's daemon is not waited for")

    monkeypatch.setattr(pause, "nats_held", never)
    assert await restart_daemon(runsc, machine_dir, "m-young", ["m-young"], {1})
    assert asked.read_text().split()[-3:] == ["kill", "c-m-young", "HUP"]


async def test_no_sandbox_no_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runsc, asked = _runsc(tmp_path)
    monkeypatch.setattr(pause, "sandbox_pid", lambda _: None)
    assert not await restart_daemon(runsc, tmp_path, "m-gone", ["m-gone"], {1})
    assert not asked.exists()
