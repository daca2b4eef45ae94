"""``fleet mcp``: codemode as an MCP server over stdio (the ``mcp`` SDK), for agents.

Two tools, both performed by the gateway at ``FLEET_URL`` with ``FLEET_TOKEN``'s rights:
``run_code`` (the ``codemode.run`` result: status, result, error, logs) and ``describe`` (the
``.pyi`` stubs of the providers a run gets, to hand to the agent before it writes code).
"""

from __future__ import annotations

from typing import Any

import msgspec
from mcp.server.mcpserver import MCPServer

from contracts.codemode import DEFAULT_TIMEOUT_S
from fleet.client import FleetClient

INSTRUCTIONS = (
    "Run Python against a fleetd fleet. Call `describe` first: it returns the type stubs of "
    "`fleet` (every gateway method), `machine` (when you pass machine_id) and the instance's "
    "bridges. `run_code` runs your code in a sandbox with top-level await; the value of the "
    "last expression is the result, print() output comes back as logs."
)


def build_server(client: FleetClient) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("fleetd-codemode", instructions=INSTRUCTIONS)

    @server.tool(description="Run Python code in the codemode sandbox; returns result and logs.")
    async def run_code(
        code: str,
        machine_id: str | None = None,
        instance_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        result = await client.code_run(
            code, machine_id=machine_id, instance_id=instance_id, timeout_s=timeout_s
        )
        out: dict[str, Any] = msgspec.to_builtins(result)
        return out

    @server.tool(description="Python stubs (.pyi) of the providers a run gets.")
    async def describe(
        providers: list[str] | None = None,
        machine_id: str | None = None,
        instance_id: str | None = None,
    ) -> dict[str, str]:
        return await client.code_describe(providers, machine_id=machine_id, instance_id=instance_id)

    return server
