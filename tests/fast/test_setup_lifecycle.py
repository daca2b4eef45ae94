"""The setup pusher runs a devcontainer machine's lifecycle commands after setup
(environments/hook.py): once-per-machine ones once, postStartCommand at every
setup, each as an event; a failing one fails the machine at its stage; the file's variables in
the .env under the instance's."""

from __future__ import annotations

import msgspec
import pytest

from contracts.bus.events import LifecycleRan, MachineFailed, SetupPushed
from contracts.errors import ToolError
from contracts.models import Repo
from contracts.status import MachineStatus as S
from controlplane.machines.machine_config import instance_config
from environments import devcontainer as dc, lifecycle_commands as lc
from environments.hook import run_lifecycle
from tests.fast.conftest import World
from tests.fast.test_gateway import method
from tests.fast.test_setup_pusher import URL, booting, report

DEV = dc.parse(
    b"""{"image": "b",
    "onCreateCommand": "echo create",
    "postCreateCommand": ["make", "deps"],
    "postStartCommand": "echo start",
    "containerEnv": {"FROM_FILE": "container", "SHARED": "container"}}""",
    ".devcontainer.json",
    workspace="/w",
)
LIFE = lc.MachineLifecycle(devcontainer=DEV, feature_lifecycle=[{"postStartCommand": "echo f"}],
                           cwd="src/app")  # fmt: skip
SH = "/bin/sh"


async def devcontainer_machine(world: World) -> str:
    """A booting machine with a lifecycle record, whose shell and make succeed."""
    machine = await booting(world)
    await world.store.lifecycles.save(machine.id, LIFE)
    m = world.daemons.boot(machine.id)
    m.on_exec([SH], stdout="ok\n")
    m.on_exec(["make"], stdout="built\n")
    return machine.id


async def test_lifecycle_after_setup_once_then_post_start_at_every_setup(world: World) -> None:
    machine = await world.machine(await devcontainer_machine(world))
    await world.store.set_env(machine.instance_id, "SHARED", "instance")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    m = world.daemons[machine.id]
    ran = [c.command for c in m.commands if c.command[0] in (SH, "make")]
    assert ran == [[SH, "-c", "echo create"], ["make", "deps"], [SH, "-c", "echo f"],
                   [SH, "-c", "echo start"]]  # fmt: skip
    assert {c.cwd for c in m.commands if c.command[0] in (SH, "make")} == {"src/app"}
    events = world.bus.of(LifecycleRan)
    assert [(e.stage, e.command, e.exit_code) for e in events][:2] == [
        ("onCreateCommand", "echo create", 0), ("postCreateCommand", "make deps", 0)]  # fmt: skip
    assert world.bus.one(SetupPushed, machine.id)
    assert await world.store.lifecycles.done(machine.id) == {"onCreateCommand", "postCreateCommand"}
    env = m.file("~/.fleet/.env").content
    assert "FROM_FILE='container'" in env
    assert "SHARED='instance'" in env  # the instance's own variable over the file's

    # The next start's setup: only postStartCommand (the feature's, then the file's) again.
    before = len(m.commands)
    cfg = instance_config(world.settings, {}, {}, [])
    mc = world.setup.daemons.machine(machine.id)
    await run_lifecycle(world.store, world.bus, machine, mc, cfg, lc.ON_CREATE + lc.ON_START,
                        cause_event_id="e-restart")  # fmt: skip
    assert [c.command for c in m.commands[before:]] == [[SH, "-c", "echo f"],
                                                        [SH, "-c", "echo start"]]  # fmt: skip


async def test_new_content_runs_update_content_again(world: World) -> None:
    machine = await world.machine(await devcontainer_machine(world))
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    m = world.daemons[machine.id]
    before = len(m.commands)
    await world.setup.checkouts.reconcile(machine, "e-repos")  # nothing new: nothing runs
    assert not [c for c in m.commands[before:] if c.command[0] == SH]

    life = lc.MachineLifecycle(devcontainer=msgspec.structs.replace(
        DEV, lifecycle={**DEV.lifecycle, "updateContentCommand": "echo update"}))  # fmt: skip
    await world.store.lifecycles.save(machine.id, life)
    await world.store.add_repo(machine.instance_id, Repo(url=URL, branch="main", path="src/b"))
    await world.setup.checkouts.reconcile(machine, "e-repos-2")
    assert [c.command for c in m.commands[before:] if c.command[0] == SH] == [
        [SH, "-c", "echo update"]]  # fmt: skip


async def test_a_failing_post_create_fails_the_machine_at_its_stage(world: World) -> None:
    machine = await world.machine(await devcontainer_machine(world))
    world.daemons.boot(machine.id).on_exec(["make"], exit_code=2, stderr="make: *** no rule\n")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()

    failed = world.bus.one(MachineFailed, machine.id)
    assert failed.stage == "postCreateCommand"
    assert failed.reason == "postCreateCommand `make deps` exited 2:\nmake: *** no rule"
    assert (await world.machine(machine.id)).status is S.FAILED
    assert world.bus.of(SetupPushed) == []
    assert await world.store.lifecycles.done(machine.id) == {"onCreateCommand"}


async def test_a_machine_without_a_devcontainer_runs_nothing_new(world: World) -> None:
    machine = await booting(world)
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    assert world.bus.of(LifecycleRan) == []
    assert not [c for c in world.daemons[machine.id].commands if c.command[0] == SH]


@method("sessions.open")
async def test_post_attach_runs_at_each_session_and_a_failing_one_fails_the_machine(
    world: World,
) -> None:
    machine = await world.ready_machine()
    attach = lc.MachineLifecycle(devcontainer=msgspec.structs.replace(
        DEV, lifecycle={"postAttachCommand": "echo attached"}))  # fmt: skip
    await world.store.lifecycles.save(machine.id, attach)
    m = world.daemons[machine.id]
    m.on_exec([SH], stdout="attached\n")
    opened = {"machineId": machine.id, "command": ["sh"]}
    for _ in range(2):
        await world.rpc("sessions.open", opened)
    assert [c.command for c in m.commands if c.command[0] == SH] == [
        [SH, "-c", "echo attached"]] * 2  # fmt: skip
    assert [e.stage for e in world.bus.of(LifecycleRan)] == ["postAttachCommand"] * 2

    m.on_exec([SH], exit_code=1, stderr="no tty\n")
    with pytest.raises(ToolError, match="postAttachCommand `echo attached` exited 1"):
        await world.rpc("sessions.open", opened)
    failed = await world.machine(machine.id)
    assert failed.status is S.FAILED
    assert failed.status_reason.startswith("postAttachCommand failed: ")
