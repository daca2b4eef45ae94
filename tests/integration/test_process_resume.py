"""A machine's stop ends its background processes and its next start brings them back
(daemon.processes.procs with real processes): every policy's process that ran at the stop runs again
in the next daemon; one killed on purpose before the stop stays down."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import msgspec

from base import procinfo
from contracts.daemon.rpc import ProcessRef, ProcessStartParams, RestartPolicy
from daemon.processes.env import ProcessEnv
from daemon.processes.procs import ProcessManager
from daemon.supervision.state import TrackedProcess
from tests.waiters import wait_until

ENVIRON = {"PATH": os.environ["PATH"]}


def manager(home: Path) -> ProcessManager:
    return ProcessManager(home, env=ProcessEnv(home, ENVIRON), on_change=lambda: None,
                          env_poll_s=0.05)  # fmt: skip


def start(tag: str, restart: RestartPolicy) -> ProcessStartParams:
    return ProcessStartParams(command=["sleep", "300"], tag=tag, restart=restart)


async def test_a_stopped_machines_processes_come_back_but_not_one_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    first = manager(home)
    async with first:
        before = {
            policy: await first.start(start(f"p-{policy}", policy))
            for policy in ("never", "always", "on-env-change")
        }
        await first.start(start("killed", "always"))
        await first.kill(ProcessRef(tag="killed"), grace_s=2)
    await first.stop_all(grace_s=2)  # the daemon's stop: the machine is stopping
    assert all(not procinfo.is_alive(p.pid, None) for p in before.values())
    saved = msgspec.json.encode(first.records())  # what the state file keeps

    second = manager(home)  # the daemon of the machine's next start
    second.adopt(msgspec.json.decode(saved, type=list[TrackedProcess]))
    try:
        async with second:
            now = {p.tag: p for p in second.list().processes}
            for policy, old in before.items():
                back = now[f"p-{policy}"]
                assert back.state == "running", policy
                assert back.pid != old.pid
                assert procinfo.is_alive(back.pid, None)
            assert now["killed"].state != "running"
            # Resumed once: the records the next daemon saves ask for nothing more.
            assert not any(r.resume for r in second.records() if r.tag != "killed")
    finally:
        await second.stop_all(grace_s=2)


async def test_a_machine_that_went_down_hard_resumes_them_on_its_boot_only(
    tmp_path: Path,
) -> None:
    """The machine SIGKILLed with its processes (no clean stop recorded them): its next boot's
    daemon starts them again; a daemon merely restarted in place does not."""
    home = tmp_path / "home"
    home.mkdir()
    first = manager(home)
    async with first:
        gone = await first.start(start("gone", "never"))
    saved = msgspec.json.encode(first.records())  # recorded running, as at a hard kill
    os.kill(gone.pid, signal.SIGKILL)
    await wait_until(lambda: procinfo.state(gone.pid) is None)

    restarted = manager(home)  # a daemon restarted in place: the machine did not go down
    restarted.adopt(msgspec.json.decode(saved, type=list[TrackedProcess]))
    async with restarted:
        assert {p.tag: p.state for p in restarted.list().processes} == {"gone": "lost"}

    booted = manager(home)  # the machine's first daemon after it went down
    booted.adopt(msgspec.json.decode(saved, type=list[TrackedProcess]), machine_boot=True)
    try:
        async with booted:
            back = {p.tag: p for p in booted.list().processes}["gone"]
            assert back.state == "running"
            assert back.pid != gone.pid
            assert procinfo.is_alive(back.pid, None)
    finally:
        await booted.stop_all(grace_s=2)
