"""``fleet mcp``: codemode as an MCP server over stdio (the ``mcp`` SDK), for agents.

The tools (``controlplane/mcp_tools.py``, the same the gateway's ``/mcp`` offers) are
performed by the gateway at ``FLEET_URL`` with ``FLEET_TOKEN``'s rights.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from contracts.daemon.code import CodeRunResult
from contracts.gateway.code import MachineCodeRunParams
from contracts.gateway.codemode import (
    CODEMODE_DESCRIBE,
    CODEMODE_RUN,
    DescribeParams,
    RunParams,
    RunResult,
    Stubs,
)
from contracts.rpc.jsonrpc import MethodSpec, P, R
from controlplane import mcp_tools
from fleet.client import FleetClient


class _ClientBackend:
    def __init__(self, client: FleetClient) -> None:
        self._client = client

    async def run(self, params: RunParams, ctx: Context) -> RunResult:
        return await self._client.call(CODEMODE_RUN, params, timeout_s=params.timeout_s + 30)

    async def describe(self, params: DescribeParams, ctx: Context) -> Stubs:
        return await self._client.call(CODEMODE_DESCRIBE, params)

    async def gateway(self, spec: MethodSpec[P, R], params: P, ctx: Context) -> R:
        return await self._client.call(spec, params)

    async def code_run(self, params: MachineCodeRunParams, ctx: Context) -> CodeRunResult:
        return await self._client.machines_code_run(
            params.machine_id, params.code, language=params.language,
            context_id=params.context_id, timeout_s=params.timeout_s, env=params.env,
        )  # fmt: skip


def build_server(client: FleetClient) -> MCPServer[Any]:
    return mcp_tools.build_server(_ClientBackend(client))
