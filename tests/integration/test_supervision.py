"""A local machine's daemon that dies is started again by its supervisor, processes kept."""

from __future__ import annotations

import os
import signal

from contracts.errors import DaemonUnavailable
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local.processes import running_pid
from providers.sandbox import sandbox_root_children, supervisor_pid
from tests.waiters import wait_until


def daemon_pid(settings: Settings, mid: str) -> int | None:
    root = running_pid(settings.data_path / "machines" / mid, mid)
    sup = supervisor_pid(root) if root else None
    children = sandbox_root_children(sup) if sup else []
    return children[0] if children else None


async def test_a_sigkilled_daemon_is_back_within_10s(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("phoenix")
    machine = await stack.create_machine(inst.id)
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    bg = await stack.start_process(machine.id, ["sleep", "300"], tag="survivor")
    old = daemon_pid(settings, machine.id)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await wait_until(lambda: daemon_pid(settings, machine.id) not in (None, old), timeout=5)

    async def answers() -> bool:  # the new daemon serves once it has connected
        try:
            return (await stack.exec(machine.id, ["echo", "back"])).stdout == "back\n"
        except DaemonUnavailable:
            return False

    await wait_until(answers, timeout=10, every=0.2)
    assert (await stack.get_machine(machine.id)).status is MachineStatus.READY
    tags = [p.tag for p in await stack.list_processes(machine.id) if p.pid == bg.pid]
    assert tags == ["survivor"]  # re-adopted by the new daemon


async def test_machines_restart_restarts_the_daemon_in_place(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("restart")
    machine = await stack.create_machine(inst.id)
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    bg = await stack.start_process(machine.id, ["sleep", "300"], tag="kept")
    old = daemon_pid(settings, machine.id)
    assert old is not None
    answer = await stack.restart_machine(machine.id)
    assert answer.id == machine.id
    await wait_until(lambda: daemon_pid(settings, machine.id) not in (None, old), timeout=5)

    async def answers() -> bool:
        try:
            return (await stack.exec(machine.id, ["echo", "back"])).stdout == "back\n"
        except DaemonUnavailable:
            return False

    await wait_until(answers, timeout=10, every=0.2)
    assert (await stack.get_machine(machine.id)).status is MachineStatus.READY
    assert [p.tag for p in await stack.list_processes(machine.id) if p.pid == bg.pid] == ["kept"]
