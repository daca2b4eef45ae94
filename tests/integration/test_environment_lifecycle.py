"""Lifecycle commands on a real daemon (environments/lifecycle.py over tool.execCommand): the
order and the parallel form as the machine sees them, the variables they get, and a failing
command's reason."""

from __future__ import annotations

import pytest

from environments import devcontainer as dc, lifecycle as lc
from services.common.bus import Bus
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import boot

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

    await lc.run_stages(mc.exec, lc.plan(lc.ON_CREATE, DEV, []), env=env, cwd=None,
                        say=said.append, done=done)  # fmt: skip
    assert (await mc.run("cat", "order.log")).stdout == "create\nupdate\n"
    assert (await mc.run("cat", "a.txt", "b.txt")).stdout == "remote\nhi\n"
    assert recorded == list(lc.ON_CREATE)
    assert "onCreateCommand: echo create >> order.log" in said

    with pytest.raises(lc.LifecycleFailed) as err:
        await lc.run_stages(mc.exec, lc.plan(lc.ON_START, DEV, [], done=recorded), env=env,
                            cwd=None, say=said.append)  # fmt: skip
    assert err.value.stage == "postStartCommand"
    assert err.value.reason == (
        "postStartCommand `echo start >> order.log && echo oops && exit 7` exited 7:\noops"
    )
    assert (await mc.run("cat", "order.log")).stdout == "create\nupdate\nstart\n"
