"""Lifecycle commands (order, forms, parallel groups, failures) and the machine's variables'
precedence (environments/lifecycle_commands.py), run through a recording stand-in for the daemon's
tool.execCommand; tests/integration/test_environment_lifecycle.py runs them on a real daemon."""

from __future__ import annotations

import asyncio

import pytest

from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from environments import devcontainer as dc, lifecycle_commands as lc

DEV = dc.parse(
    b"""{"image": "b",
    "onCreateCommand": "echo create",
    "updateContentCommand": ["make", "deps"],
    "postCreateCommand": {"web": "npm ci", "db": ["createdb", "app"]},
    "postStartCommand": "echo ${containerEnv:GREETING}",
    "postAttachCommand": "echo attached",
    "containerEnv": {"GREETING": "hi", "SHARED": "container", "LEVEL": "container"},
    "remoteEnv": {"PATH": "${containerEnv:PATH}:/opt/bin", "LEVEL": "remote"}}""",
    ".devcontainer.json",
    workspace="/w",
)
FEATURE = [{"postCreateCommand": "echo feature"}]


def test_order_forms_and_features_first() -> None:
    todo = lc.plan(lc.ON_CREATE, DEV, FEATURE)
    assert [(stage, [[s.describe() for s in g] for g in groups]) for stage, groups in todo] == [
        ("onCreateCommand", [["echo create"]]),
        ("updateContentCommand", [["make deps"]]),
        ("postCreateCommand", [["echo feature"], ["web: npm ci", "db: createdb app"]]),
    ]
    assert todo[0][1][0][0].argv == ["/bin/sh", "-c", "echo create"]
    assert todo[1][1][0][0].argv == ["make", "deps"]  # an argv runs without a shell


def test_done_stages_are_skipped_and_no_devcontainer_runs_nothing() -> None:
    done = {"onCreateCommand", "updateContentCommand", "postCreateCommand"}
    assert lc.plan(lc.ON_CREATE, DEV, FEATURE, done=done) == []
    assert [s for s, _ in lc.plan(lc.ON_START + lc.ON_ATTACH, DEV, [])] == [
        "postStartCommand",
        "postAttachCommand",
    ]
    assert lc.plan(lc.ON_CREATE + lc.ON_START, None, FEATURE) == []


class Daemon:
    """Records each command; ``fail`` names a program that exits 3 after saying something."""

    def __init__(self, fail: str = "") -> None:
        self.ran: list[list[str]] = []
        self.fail = fail
        self.concurrent = self.most = 0

    async def __call__(self, _: lc.Step, p: ExecCommandParams) -> ExecCommandResult:
        self.ran.append(p.command)
        self.concurrent += 1
        self.most = max(self.most, self.concurrent)
        turn = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(turn.set_result, None)
        await turn  # one turn of the loop: a parallel sibling starts meanwhile
        self.concurrent -= 1
        if p.command[0] == self.fail:
            out = "".join(f"line {n}\n" for n in range(30))
            return ExecCommandResult(exit_code=3, stdout=out, stderr="boom\n")
        return ExecCommandResult(exit_code=0, stdout=f"ran {p.command[-1]}\n", stderr="")


async def test_runs_in_order_parallel_groups_together_and_records_each_stage() -> None:
    daemon, said, recorded = Daemon(), [], []

    async def done(stage: str) -> None:
        recorded.append(stage)

    env = {"PATH": "/bin", "GREETING": "hi"}
    todo = lc.plan(lc.ON_CREATE + lc.ON_START, DEV, FEATURE)
    await lc.run_stages(daemon, todo, env=env, cwd="src/app", say=said.append, done=done)
    assert daemon.ran[:3] == [["/bin/sh", "-c", "echo create"], ["make", "deps"],
                              ["/bin/sh", "-c", "echo feature"]]  # fmt: skip
    assert daemon.ran[-1] == ["/bin/sh", "-c", "echo hi"]  # ${containerEnv:...} resolved
    assert daemon.most == 2  # the object form's two commands at once
    assert recorded == [*lc.ON_CREATE, "postStartCommand"]
    assert "postCreateCommand[db]: ran app" in said


async def test_a_failing_command_names_its_stage_command_exit_code_and_last_lines() -> None:
    todo = lc.plan(lc.ON_CREATE, DEV, [])
    with pytest.raises(lc.LifecycleFailed) as err:
        await lc.run_stages(Daemon(fail="createdb"), todo, env={}, cwd=None, say=lambda _: None)
    assert err.value.stage == "postCreateCommand"
    reason = err.value.reason
    assert reason.startswith("postCreateCommand `db: createdb app` exited 3:\n")
    assert reason.endswith("line 29\nboom")
    assert "line 10" not in reason  # only the last lines


def test_precedence_image_platform_container_remote_instance() -> None:
    image = {"PATH": "/usr/bin", "LEVEL": "image", "ONLY_IMAGE": "1"}
    platform = {"LEVEL": "platform", "SHARED": "platform", "ONLY_PLATFORM": "1"}
    instance = {"SHARED": "instance"}
    env = lc.machine_env(platform, instance, DEV, image, base={"HTTPS_PROXY": "p"})
    assert env["LEVEL"] == "remote"  # remoteEnv over containerEnv over platform over image
    assert env["SHARED"] == "instance"  # the instance's own variable wins over all
    assert env["PATH"] == "/usr/bin:/opt/bin"  # ${containerEnv:PATH}: the image's
    assert (env["ONLY_IMAGE"], env["ONLY_PLATFORM"], env["HTTPS_PROXY"]) == ("1", "1", "p")
    assert env["GREETING"] == "hi"
    # Without devcontainer settings: as before (platform, then instance), over the image's.
    plain = lc.machine_env(platform, instance, None, image)
    assert (plain["LEVEL"], plain["SHARED"]) == ("platform", "instance")
