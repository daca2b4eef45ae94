"""Codemode and MCP over HTTP: the gateway's ``/mcp`` driven by the ``mcp`` SDK's own
streamable-HTTP client, and the MCP client bridge against a small MCP server the test starts
with the SDK (served by uvicorn, as an SDK user would)."""

from __future__ import annotations

import ast
import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError

from contracts.errors import Forbidden, ToolError
from contracts.gateway import codemode as cm
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_codemode import codemode  # noqa: F401 - the fixture
from tests.waiters import wait_until


def _mcp_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.port}{cm.MCP_PATH}"


@asynccontextmanager
async def mcp_client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _structured(answer: Any) -> dict[str, Any]:
    assert not answer.is_error, answer
    assert answer.structured_content is not None
    out: dict[str, Any] = answer.structured_content
    return out


async def test_gateway_mcp_over_http_runs_code(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    async with mcp_client(_mcp_url(settings), ADMIN_TOKEN) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"run_code", "describe"} <= names
        code = "print('hi')\nawait fleet.instances.list()\n6 * 7"
        out = _structured(await client.call_tool("run_code", {"code": code}))
        assert (out["status"], out["result"], out["logs"]) == ("ok", 42, ["hi"])
        stubs = _structured(await client.call_tool("describe", {"providers": ["fleet"]}))
        ast.parse(stubs["fleet"])
    assert out["runId"] in {r.run_id for r in await codemode.code_list()}


async def test_gateway_mcp_first_requests_together_share_one_start(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    """The gateway starts its MCP server on the first /mcp request: requests that arrive
    together while it starts each get their answer, from the one server it started."""

    async def tools() -> set[str]:
        async with mcp_client(_mcp_url(settings), ADMIN_TOKEN) as client:
            return {t.name for t in (await client.list_tools()).tools}

    answers = await asyncio.gather(*(tools() for _ in range(4)))
    assert all({"run_code", "describe"} <= names for names in answers), answers


async def test_gateway_mcp_refuses_a_missing_or_bad_token(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            async with http.post(_mcp_url(settings), json=init, headers=headers) as resp:
                assert resp.status == 401, await resp.text()
    with pytest.raises(Exception):  # noqa: B017,PT011 - the SDK's client fails on a 401
        async with mcp_client(_mcp_url(settings), None) as client:
            await client.list_tools()


async def test_gateway_mcp_runs_with_the_requests_token_only(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    """An instance token over /mcp: a run is scoped like the token (its fleet calls, the
    instance it may name), and bad arguments are answered naming the field."""
    mine = await codemode.create_instance("mcp-mine")
    other = await codemode.create_instance("mcp-other")
    token = await codemode.create_token("mcp", mine.id)
    async with mcp_client(_mcp_url(settings), token.token) as client:
        code = (
            "try:\n"
            f"    await fleet.instances.get(instanceId={other.id!r})\n"
            "except ToolError as e:\n"
            "    denied = e.code\n"
            "denied"
        )
        out = _structured(await client.call_tool("run_code", {"code": code}))
        assert out["result"] == Forbidden.code, out
        refused = await client.call_tool("run_code", {"code": "1", "instance_id": other.id})
        assert refused.is_error
        assert "instance" in str(refused.content).lower()
        bad = await client.call_tool("run_code", {"code": "1", "timeout_s": 10_000})
        assert bad.is_error
        assert "timeoutS" in str(bad.content)
    runs = await codemode.code_list(other.id)
    assert runs == []  # nothing ran in the instance the token may not use


async def test_gateway_mcp_refuses_an_oversized_body(
    codemode: FleetClient,  # noqa: F811
    settings: Settings,
) -> None:
    body = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","pad":"'
        + b"x" * (settings.max_body_bytes + 1)
        + b'"}'
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}  # fmt: skip
    async with httpx2.AsyncClient(timeout=30) as http:
        resp = await http.post(_mcp_url(settings), content=body, headers=headers)
    assert resp.status_code == 413, resp.text


def small_mcp_server(seen_auth: list[str]) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("small-tools")

    @server.tool(description="Add two numbers.")
    def add(a: int, b: int, ctx: Context) -> dict[str, int]:
        request = ctx.request_context.request
        seen_auth.append(request.headers.get("authorization", "") if request else "")
        return {"sum": a + b}

    @server.tool(description="Always fails.")
    def broken(reason: str) -> str:
        raise McpToolError(f"broken: {reason}")  # the SDK hides any other exception's text

    return server


@asynccontextmanager
async def served(server: MCPServer[Any]) -> AsyncIterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))  # a port the kernel gives, served by uvicorn
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        await wait_until(lambda: uv.started or task.done(), timeout=20)
        assert uv.started, task
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


async def test_mcp_bridge_calls_a_remote_servers_tools(
    codemode: FleetClient,  # noqa: F811
) -> None:
    seen_auth: list[str] = []
    async with served(small_mcp_server(seen_auth)) as url:
        inst = await codemode.create_instance("mcp-bridged")
        bridge = cm.McpBridge(name="tools", url=url, authorization="Bearer tools-secret")
        info = await codemode.code_set_bridge(inst.id, bridge)
        assert (info.kind, info.has_authorization) == ("mcp", True)
        code = (
            "total = await tools.add(a=2, b=40)\n"
            "try:\n    await tools.broken(reason='on purpose')\n"
            "except ToolError as e:\n    err = [e.code, e.message]\n"
            "[total, err]"
        )
        result = await codemode.code_run(code, instance_id=inst.id)
        assert result.status == "ok", result
        total, (code_, message) = result.result
        assert total == {"sum": 42}
        assert code_ == ToolError.code
        assert "on purpose" in message
        assert seen_auth == ["Bearer tools-secret"]  # the service added the sealed header
        stubs = await codemode.code_describe(["tools"], instance_id=inst.id)
        tree = ast.parse(stubs["tools"])
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)}
        assert {"add", "broken"} <= names
