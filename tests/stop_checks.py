"""What the stop/start tests check for each provider (``local`` and ``docker``): one scenario,
written once, driven through the gateway against real daemons; the provider's host-side
facts (where the home is, whether anything of the machine still runs) come from the test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from contracts.errors import MachineStopped
from contracts.status import MachineStatus
from fleet.client import FleetClient

HomeOf = Callable[[str], Awaitable[Path]]
Running = Callable[[str], Awaitable[bool]]


def unique_sleep() -> list[str]:
    """A ``sleep`` no other process's command line ends with: a whole number of seconds would
    be a port or a mode another process was given (this host's PID 1 takes 2024 and 32768, a
    sandbox's bwrap 1777), so the test would see that process as the machine's."""
    return ["sleep", f"{100000 + secrets.randbelow(800000)}.{secrets.randbelow(10**6):06d}"]


def host_pids_running(argv_tail: list[str]) -> list[int]:
    """Host pids whose command line ends with ``argv_tail`` (a unique sleep's): the host's
    view, whatever namespace the machine's processes live in."""
    want = "\0".join(argv_tail).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().rstrip(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1][:1]
        except OSError:
            continue
        if cmd.endswith(want) and state not in ("Z", "X"):
            found.append(int(entry))
    return found


async def ready_machine(stack: FleetClient, name: str, provider: str | None = None) -> str:
    inst = await stack.create_instance(name)
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


async def refused_as_stopped(stack: FleetClient, mid: str) -> None:
    """exec on the stopped machine: MachineStopped (with the hint), which only the gateway's
    own record answers (a call that reached for the daemon would end DaemonUnavailable or
    DaemonTimeout), every time."""
    for _ in range(3):
        with pytest.raises(MachineStopped) as refused:
            await stack.exec(mid, ["true"], timeout_s=30)
        assert refused.value.code == 1040
        assert refused.value.data is not None
        assert "machines.start" in refused.value.data["hint"]


async def stop_and_start_keep_the_machine(
    stack: FleetClient, mid: str, home_of: HomeOf, running: Running
) -> None:
    """Stop, then start: the home's file stays, nothing runs while stopped, exec is refused at
    once, a background process comes back (one killed on purpose does not), and an env var
    set while stopped is in the .env after the start."""
    instance_id = (await stack.get_machine(mid)).instance_id
    await stack.write_file(mid, "~/notes/kept.txt", "written before the stop\n")
    kept, killed = unique_sleep(), unique_sleep()
    await stack.start_process(mid, kept, tag="kept")
    await stack.start_process(mid, killed, tag="killed")
    await stack.kill_process(mid, tag="killed")
    assert host_pids_running(kept), "the background process does not run"

    stopping = await stack.stop_machine(mid)
    assert stopping.status is MachineStatus.STOPPING
    assert stopping.status_reason == "stopped by request"
    stopped = await stack.wait_for(mid, ("stopped",), timeout_s=60)
    assert stopped.status_reason == "stopped by request"
    # From the host, the moment it says stopped: no process of the machine is left.
    assert not await running(mid)
    assert not host_pids_running(kept)
    await refused_as_stopped(stack, mid)  # at once, never a daemon timeout
    await stack.set_env("SET_WHILE_STOPPED", "yes", instance_id=instance_id)
    again = await stack.stop_machine(mid)  # a repeat: no change, no error
    assert again.status is MachineStatus.STOPPED

    started = await stack.start_machine(mid)
    assert started.status is MachineStatus.BOOTING
    ready = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert ready.status is MachineStatus.READY, ready.status_reason
    assert ready.id == mid
    home = await home_of(mid)
    assert (home / "notes" / "kept.txt").read_text() == "written before the stop\n"
    assert "SET_WHILE_STOPPED='yes'" in (home / ".fleet" / ".env").read_text()
    cat = await stack.exec(mid, ["cat", "notes/kept.txt"])
    assert cat.stdout == "written before the stop\n"
    procs = {p.tag: p for p in await stack.list_processes(mid)}
    assert procs["kept"].state == "running"
    assert host_pids_running(kept)
    assert procs.get("killed") is None or procs["killed"].state != "running"
    assert not host_pids_running(killed)
