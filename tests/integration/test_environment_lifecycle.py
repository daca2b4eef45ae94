"""Lifecycle commands on a real daemon (environments/lifecycle_commands.py over tool.execCommand):
the order and the parallel form as the machine sees them, the variables they get, and a failing
command's reason; a command's output as lifecycle-output events while it runs
(environments/hook.py over tool.execStream)."""

from __future__ import annotations

import asyncio

import pytest

from contracts.bus import subjects
from contracts.bus.events import LifecycleOutput
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from controlplane.bus import Bus
from environments import devcontainer as dc, lifecycle_commands as lc
from environments.hook import streamed
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import boot
from tests.waiters import subscribed

DEV = dc.parse(
    b"""{"image": "b",
    // each appends to a log in the home; the parallel pair each writes a file of its own
    "onCreateCommand": "echo create >> order.log",
    "updateContentCommand": ["sh", "-c", "echo update >> order.log"],
    "postCreateCommand": {"a": "echo $LEVEL > a.txt", "b": "echo ${containerEnv:GREETING} > b.txt"},
    "postStartCommand": "echo start >> order.log && echo oops && exit 7",
    "containerEnv": {"GREETING": "hi", "LEVEL": "container"},
    "remoteEnv": {"LEVEL": "remote"}}""",
    ".devcontainer.json",
    workspace="/w",
)


async def test_lifecycle_on_a_real_daemon(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    _, mc = await boot(bus, spawn_daemon)
    env = lc.machine_env({"LEVEL": "platform"}, {}, DEV, {"PATH": "/usr/bin:/bin"})
    said: list[str] = []
    recorded: list[str] = []

    async def done(stage: str) -> None:
        recorded.append(stage)

    async def run(_: lc.Step, params: ExecCommandParams) -> ExecCommandResult:
        return await mc.exec(params)

    await lc.run_stages(run, lc.plan(lc.ON_CREATE, DEV, []), env=env, cwd=None,
                        say=said.append, done=done)  # fmt: skip
    assert (await mc.run("cat", "order.log")).stdout == "create\nupdate\n"
    assert (await mc.run("cat", "a.txt", "b.txt")).stdout == "remote\nhi\n"
    assert recorded == list(lc.ON_CREATE)
    assert "onCreateCommand: echo create >> order.log" in said

    with pytest.raises(lc.LifecycleFailed) as err:
        await lc.run_stages(run, lc.plan(lc.ON_START, DEV, [], done=recorded), env=env,
                            cwd=None, say=said.append)  # fmt: skip
    assert err.value.stage == "postStartCommand"
    assert err.value.reason == (
        "postStartCommand `echo start >> order.log && echo oops && exit 7` exited 7:\noops"
    )
    assert (await mc.run("cat", "order.log")).stdout == "create\nupdate\nstart\n"


async def test_a_commands_output_is_published_while_it_runs(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    _, mc = await boot(bus, spawn_daemon)
    step = lc.Step("postStartCommand", None, lc.argv("echo a; sleep 1.2; echo b; echo oops >&2"))
    params = ExecCommandParams(command=step.argv, timeout_s=30)
    subject = subjects.event(subjects.EventKind.LIFECYCLE_OUTPUT, mc.machine_id)
    async with subscribed(bus.nc, subject) as inbox:
        run = asyncio.create_task(streamed(bus, mc.machine_id, mc, step, params))
        first = await inbox.next_event(timeout=10)
        assert not run.done()  # "b" is 1.2 s away: the first line came while it ran
        result = await asyncio.wait_for(run, timeout=30)
        events = [first]
        lines = list(getattr(first, "lines", []))
        while not {"b", "oops"} <= set(lines):  # the rest, published before it returned
            events.append(await inbox.next_event(timeout=10))
            lines += getattr(events[-1], "lines", [])
    assert all(isinstance(e, LifecycleOutput) for e in events), events
    assert isinstance(first, LifecycleOutput)
    assert (first.stage, first.command, first.lines) == ("postStartCommand", step.describe(), ["a"])
    assert sorted(lines) == ["a", "b", "oops"]
    assert (result.exit_code, result.stdout, result.stderr) == (0, "a\nb\n", "oops\n")
