"""The code interpreter's gateway methods (machines.code.*): params validated before any daemon
is asked, the caller's access to the machine checked as machines.exec checks it, the daemon's
answer and its named errors passed through, and a run given its timeout (and a kernel's start)
to answer in. The kernels themselves are tested on real machines in
tests/integration/test_code_interpreter.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.daemon import code as dc
from contracts.errors import (
    Conflict,
    Forbidden,
    InvalidParams,
    LanguageUnavailable,
    NotFound,
    RateLimited,
)
from services.gateway.auth import Caller
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances

RUN = "machines.code.run"
EXEC_BUDGET = 3


@pytest.fixture
def settings(settings: msgspec.Struct) -> msgspec.Struct:
    return msgspec.structs.replace(settings, rate_exec_per_min=EXEC_BUDGET)


async def _machine(world: World) -> tuple[str, str, str]:
    a, b = await two_instances(world)
    return (await world.ready_machine(a)).id, a, b


@method(RUN)
async def test_a_run_reaches_the_machine_of_a_caller_who_may_exec(world: World) -> None:
    mid, a, b = await _machine(world)
    got = await world.rpc(RUN, {"machineId": mid, "code": "x + 1", "timeoutS": 30,
                                "env": {"A_B": "1"}}, token_of(a))  # fmt: skip
    assert got["results"] == [{"text/plain": "x + 1", "isMain": True}]
    assert (got["contextId"], got["error"], got["truncated"]) == ("default-python", None, False)
    (call,) = world.daemons.calls_of(dc.CODE_RUN.name, mid)
    assert call.params == dc.CodeRunParams(code="x + 1", timeout_s=30, env={"A_B": "1"})
    # Its answer may come as late as its own timeout, a kernel's start and an interrupt's grace.
    assert call.timeout_s is not None
    assert call.timeout_s >= 30 + dc.KERNEL_START_S + dc.INTERRUPT_GRACE_S
    with pytest.raises(Forbidden):
        await world.rpc(RUN, {"machineId": mid, "code": "1"}, token_of(b))
    reader = Caller(token_id="t-r", admin=False, instance_id=a,
                    scopes=frozenset({"machines:read"}))  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc(RUN, {"machineId": mid, "code": "1"}, reader)
    assert len(world.daemons.calls_of(dc.CODE_RUN.name, mid)) == 1


BAD_RUNS: list[tuple[dict[str, Any], str]] = [
    ({"code": 1}, "$.code"),
    ({"code": "x" * (dc.MAX_CODE_CHARS + 1)}, "$.code"),
    ({"code": "1", "timeoutS": 0}, "$.timeoutS"),
    ({"code": "1", "timeoutS": dc.MAX_CODE_TIMEOUT_S + 1}, "$.timeoutS"),
    ({"code": "1", "language": "Py thon"}, "$.language"),
    ({"code": "1", "contextId": "../x"}, "$.contextId"),
    ({"code": "1", "env": {"A=B": "1"}}, "env"),
    ({"code": "1", "stream": True}, "stream"),
]


@method(RUN)
@pytest.mark.parametrize(("params", "field"), BAD_RUNS, ids=[f for _, f in BAD_RUNS])
async def test_a_bad_run_is_refused_before_the_daemon(
    world: World, params: dict[str, Any], field: str
) -> None:
    mid, _, _ = await _machine(world)
    with pytest.raises(InvalidParams) as err:
        await world.rpc(RUN, {"machineId": mid, **params})
    assert field in (err.value.field or err.value.message)
    assert world.daemons.calls_of(dc.CODE_RUN.name, mid) == []


@method(RUN)
async def test_runs_count_in_the_exec_budget(world: World) -> None:
    mid, a, _ = await _machine(world)
    caller = Caller(token_id="t-00000000000000bd", admin=False, instance_id=a)
    for _ in range(EXEC_BUDGET):
        await world.rpc(RUN, {"machineId": mid, "code": "1"}, caller)
    with pytest.raises(RateLimited):
        await world.rpc(RUN, {"machineId": mid, "code": "1"}, caller)
    with pytest.raises(RateLimited):  # one budget: a command is refused as well
        await world.rpc("machines.exec", {"machineId": mid, "command": ["true"]}, caller)


@method("machines.code.createContext", "machines.code.listContexts",
        "machines.code.restartContext", "machines.code.deleteContext",
        "machines.code.interrupt")  # fmt: skip
async def test_contexts(world: World) -> None:
    mid, a, b = await _machine(world)
    me = token_of(a)
    made = await world.rpc("machines.code.createContext", {"machineId": mid, "language": "bash",
                                                           "cwd": "src"}, me)  # fmt: skip
    ref = {"machineId": mid, "contextId": made["id"]}
    assert made["language"] == "bash"
    listed = await world.rpc("machines.code.listContexts", {"machineId": mid}, me)
    assert (listed["contexts"], listed["languages"]) == ([made], ["bash", "python"])
    assert await world.rpc("machines.code.restartContext", ref, me) == made
    assert await world.rpc("machines.code.interrupt", ref, me) == {"id": made["id"],
                                                                  "interrupted": False}  # fmt: skip
    for name in ("machines.code.listContexts", "machines.code.deleteContext"):
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": mid, "contextId": made["id"]} if "delete" in name
                            else {"machineId": mid}, token_of(b))  # fmt: skip
    assert await world.rpc("machines.code.deleteContext", ref, me) == {"id": made["id"],
                                                                      "deleted": True}  # fmt: skip
    with pytest.raises(NotFound):
        await world.rpc(RUN, {**ref, "code": "1"}, me)
    with pytest.raises(LanguageUnavailable) as none:
        await world.rpc("machines.code.createContext", {"machineId": mid, "language": "ruby"}, me)
    assert (none.value.data or {})["languages"] == ["bash", "python"]


@method(RUN, "machines.code.listContexts")
async def test_an_archived_machine_runs_nothing(world: World) -> None:
    mid, _, _ = await _machine(world)
    await world.rpc("machines.archive", {"machineId": mid})
    await world.bus.settle()
    for name, params in ((RUN, {"code": "1"}), ("machines.code.listContexts", {})):
        with pytest.raises(Conflict):
            await world.rpc(name, {"machineId": mid, **params})
