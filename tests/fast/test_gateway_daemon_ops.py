"""Every gateway method that reaches a machine's daemon (exec, writeFile, refresh, processes),
through the JSON-RPC ``Dispatcher`` with JSON bodies, as ``test_gateway.py`` does for the rest."""

from __future__ import annotations

import pytest

from contracts.errors import (
    Conflict,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    NotFound,
    NotSupported,
)
from tests.fast.conftest import PLATFORM_SHA, World
from tests.fast.test_gateway import method, token_of, two_instances


@method("machines.exec")
async def test_machines_exec(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    world.daemons[machine.id].on_exec(["uname"], stdout="Linux\n")
    params = {"machineId": machine.id, "command": ["uname"], "cwd": "src", "timeoutS": 7}
    answer = await world.rpc("machines.exec", params, token_of(a))
    assert answer == {"exitCode": 0, "stdout": "Linux\n", "stderr": "", "timedOut": False,
                      "truncated": False}  # fmt: skip
    [call] = world.daemons.calls_of("tool.execCommand", machine.id)[-1:]
    assert call.timeout_s == 7 + 5  # the command's own timeout, plus the answer's margin
    with pytest.raises(Forbidden):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["id"]},
                        token_of(b))  # fmt: skip
    with pytest.raises(InvalidParams):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": []})
    world.daemons[machine.id].mode = "unavailable"
    with pytest.raises(DaemonUnavailable):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["id"]})
    await world.rpc("machines.archive", {"machineId": machine.id})
    with pytest.raises(Conflict):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["id"]})


@method("machines.writeFile")
async def test_machines_write_file(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    m = world.daemons[machine.id]
    answer = await world.rpc("machines.writeFile", {"machineId": machine.id, "path": "notes.txt",
                                                    "content": "hé", "mode": 0o600})  # fmt: skip
    assert answer == {"path": m.path("notes.txt"), "bytesWritten": 3}
    assert m.file("notes.txt").mode == 0o600
    with pytest.raises(Forbidden):
        await world.rpc("machines.writeFile", {"machineId": machine.id, "path": "x",
                                               "content": ""}, token_of(b))  # fmt: skip
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.writeFile", {"machineId": machine.id, "path": "x",
                                               "content": "", "mode": 0o10000})  # fmt: skip
    assert bad.value.field == "$.mode"


@method("machines.refreshEnv")
async def test_machines_refresh_env_writes_running_machines_and_reports_failures(
    world: World,
) -> None:
    a, b = await two_instances(world)
    ok = await world.ready_machine(a)
    down = await world.ready_machine(b)
    world.daemons[down.id].mode = "unavailable"
    await world.rpc("env.set", {"instanceId": a, "name": "NEW", "value": "1"})
    answer = await world.rpc("machines.refreshEnv")
    assert (answer["machines"], answer["written"]) == (2, 1)
    assert [(f["machineId"], f["code"]) for f in answer["failed"]] == [(down.id, 1502)]
    assert "NEW='1'" in world.daemons[ok.id].file("~/.fleet/.env").content
    # An instance token refreshes its own instance only; another's is Forbidden.
    mine = await world.rpc("machines.refreshEnv", caller=token_of(a))
    assert (mine["machines"], mine["written"]) == (1, 1)
    with pytest.raises(Forbidden):
        await world.rpc("machines.refreshEnv", {"instanceId": b}, token_of(a))


@method("machines.refreshCode")
async def test_machines_refresh_code(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    answer = await world.rpc("machines.refreshCode", {"machineId": machine.id}, token_of(a))
    assert answer == {"restarting": True, "fromGitSha": "0" * 40, "toGitSha": PLATFORM_SHA,
                      "machineId": machine.id,
                      "message": f"installed {PLATFORM_SHA} on {machine.id}"}  # fmt: skip
    assert world.provider.installs == [(machine.id, PLATFORM_SHA)]
    with pytest.raises(Forbidden):
        await world.rpc("machines.refreshCode", {"machineId": machine.id}, token_of(b))
    world.provider.can_install_code = False
    with pytest.raises(NotSupported):
        await world.rpc("machines.refreshCode", {"machineId": machine.id})


@method("machines.refreshCode")
async def test_machines_refresh_code_needs_a_running_machine(world: World) -> None:
    a, _ = await two_instances(world)
    created = await world.rpc("machines.create", {"instanceId": a})
    with pytest.raises(Conflict) as conflict:
        await world.rpc("machines.refreshCode", {"machineId": created["id"]})
    assert conflict.value.data == {"status": "created"}


@method("machines.process.start", "machines.process.list", "machines.process.kill",
        "machines.process.logs")  # fmt: skip
async def test_machines_processes(world: World) -> None:
    a, b = await two_instances(world)
    machine = await world.ready_machine(a)
    mid = machine.id
    started = await world.rpc("machines.process.start", {
        "machineId": mid, "command": ["python3", "-m", "http.server"], "tag": "web",
        "restart": "always"}, token_of(a))  # fmt: skip
    assert (started["tag"], started["state"], started["restart"]) == ("web", "running", "always")
    with pytest.raises(Conflict):  # the tag is taken by a live process
        await world.rpc("machines.process.start", {"machineId": mid, "command": ["x"],
                                                   "tag": "web"})  # fmt: skip
    listed = await world.rpc("machines.process.list", {"machineId": mid})
    assert [p["pid"] for p in listed["processes"]] == [started["pid"]]
    world.daemons[mid].process_logs[started["pid"]] += ["one", "two", "three"]
    logs = await world.rpc("machines.process.logs", {"machineId": mid, "tag": "web", "tail": 2})
    assert logs == {"pid": started["pid"], "tag": "web", "lines": ["two", "three"]}
    killed = await world.rpc("machines.process.kill", {"machineId": mid, "pid": started["pid"]})
    assert killed["state"] == "exited"
    with pytest.raises(NotFound):
        await world.rpc("machines.process.kill", {"machineId": mid, "tag": "nope"})
    with pytest.raises(InvalidParams):  # exactly one of pid and tag
        await world.rpc("machines.process.logs", {"machineId": mid, "pid": 1, "tag": "web"})
    with pytest.raises(Forbidden):
        await world.rpc("machines.process.list", {"machineId": mid}, token_of(b))


# --- cron -------------------------------------------------------------------------------------
