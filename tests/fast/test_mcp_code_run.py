"""The MCP tool ``machines_code_run`` on the fast layer's world, driven by the ``mcp`` SDK's
client over the gateway's real ``/mcp``: it runs ``machines.code.run`` through the dispatcher
with the request's caller, so a token without ``machines:exec`` on the machine's instance is
refused, and the runs count in the caller's exec budget, exactly as over ``POST /rpc``. (The
fake daemon answers a run's code back as its text result; the kernels themselves are
tests/integration/test_code_interpreter.py's.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import msgspec
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from contracts.daemon import code as dc
from contracts.errors import Forbidden, InvalidParams, RateLimited
from contracts.gateway.codemode import MCP_PATH
from contracts.people import MACHINES_EXEC, MACHINES_READ
from controlplane.mcp_tools import CODE_RUN_TOOL
from services.gateway.auth import Caller
from tests.fast.conftest import World
from tests.fast.test_rights_routes import served

EXEC_BUDGET = 3


@pytest.fixture
def settings(settings: msgspec.Struct) -> msgspec.Struct:
    return msgspec.structs.replace(settings, rate_exec_per_min=EXEC_BUDGET)


def _caller(n: str, instance_id: str, scope: str = MACHINES_EXEC) -> Caller:
    return Caller(token_id=f"t-00000000000000{n}", admin=False, instance_id=instance_id,
                  scopes=frozenset({scope}))  # fmt: skip


@asynccontextmanager
async def _mcp(base: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{base}{MCP_PATH}", http_client=http)) as client,
    ):
        yield client


def _refused(answer: Any, error: type[Exception]) -> bool:
    return bool(answer.is_error) and f"error {error.code}" in json.dumps(  # type: ignore[attr-defined]
        answer.model_dump()
    )


async def test_the_tool_runs_in_the_machines_kernel_for_a_caller_who_may_exec(
    world: World,
) -> None:
    a = (await world.instance("a")).id
    b = (await world.instance("b")).id
    mid = (await world.ready_machine(a)).id
    callers = {"runner": _caller("a1", a), "reader": _caller("a2", a, MACHINES_READ),
               "stranger": _caller("b1", b)}  # fmt: skip
    async with served(world, callers) as (base, _):
        async with _mcp(base, "runner") as client:
            assert CODE_RUN_TOOL in {t.name for t in (await client.list_tools()).tools}
            args = {"machine_id": mid, "code": "x + 1", "context_id": None, "timeout_s": 30}
            answer = await client.call_tool(CODE_RUN_TOOL, args)
            assert not answer.is_error, answer
            assert [c.text for c in answer.content] == ["x + 1"]  # type: ignore[union-attr]
            out = answer.structured_content or {}
            assert (out["contextId"], out["error"], out["truncated"]) == ("default-python", None,
                                                                          False)  # fmt: skip
            bad = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "1",
                                                         "timeout_s": 10_000})  # fmt: skip
            assert _refused(bad, InvalidParams), bad
            assert "timeoutS" in str(bad.content), bad
        for who in ("reader", "stranger"):
            async with _mcp(base, who) as client:
                refused = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "1"})
                assert _refused(refused, Forbidden), (who, refused)
    (run,) = world.daemons.calls_of(dc.CODE_RUN.name, mid)  # only the runner's ran
    assert run.params == dc.CodeRunParams(code="x + 1", timeout_s=30)


async def test_the_tools_runs_count_in_the_callers_exec_budget(world: World) -> None:
    a = (await world.instance("a")).id
    mid = (await world.ready_machine(a)).id
    async with (
        served(world, {"runner": _caller("a3", a)}) as (base, _),
        _mcp(base, "runner") as client,
    ):
        for _ in range(EXEC_BUDGET):
            ok = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "1"})
            assert not ok.is_error, ok
        over = await client.call_tool(CODE_RUN_TOOL, {"machine_id": mid, "code": "1"})
        assert _refused(over, RateLimited), over
    assert len(world.daemons.calls_of(dc.CODE_RUN.name, mid)) == EXEC_BUDGET
