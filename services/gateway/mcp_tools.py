"""Codemode's MCP server: the tools ``run_code`` and ``describe``, defined once and served twice:
by ``fleet mcp`` over stdio (through a ``FleetClient``) and by the gateway's ``/mcp`` over
streamable HTTP (through ``CodemodeOps``, with the caller of each HTTP request).

A backend gets params checked as ``POST /rpc`` checks them. A ``FleetError`` (a bad argument,
a refused instance) becomes the tool's error result, its text naming the JSON-RPC code and data
(the SDK would otherwise hide the text of any other exception) and the tool call's MCP ``Context``
(the gateway reads its caller from there).
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError

from contracts.codemode import DEFAULT_TIMEOUT_S, DescribeParams, RunParams, RunResult, Stubs
from contracts.errors import FleetError
from contracts.jsonrpc import P, invalid_params, new_params

NAME = "fleetd-codemode"
INSTRUCTIONS = (
    "Run Python against a fleetd fleet. Call `describe` first: it returns the type stubs of "
    "`fleet` (every gateway method), `machine` (when you pass machine_id) and the instance's "
    "bridges. `run_code` runs your code in a sandbox with top-level await; the value of the "
    "last expression is the result, print() output comes back as logs."
)


def checked(params: P) -> P:
    """``params`` through the wire's decoder: its constraints (patterns, bounds) hold."""
    try:
        return msgspec.json.decode(msgspec.json.encode(params), type=type(params))
    except msgspec.ValidationError as exc:
        raise invalid_params(exc) from None


def tool_error(exc: FleetError) -> McpToolError:
    data = f" {msgspec.json.encode(exc.data).decode()}" if exc.data else ""
    return McpToolError(f"{exc.message} (error {exc.code}{data})")


class CodemodeBackend(Protocol):
    async def run(self, params: RunParams, ctx: Context) -> RunResult: ...

    async def describe(self, params: DescribeParams, ctx: Context) -> Stubs: ...


def build_server(backend: CodemodeBackend) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(NAME, instructions=INSTRUCTIONS)

    @server.tool(description="Run Python code in the codemode sandbox; returns result and logs.")
    async def run_code(
        code: str,
        ctx: Context,
        machine_id: str | None = None,
        instance_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        try:
            params = checked(new_params(RunParams, code=code, machine_id=machine_id,
                                        instance_id=instance_id, timeout_s=timeout_s))  # fmt: skip
            result = await backend.run(params, ctx)
        except FleetError as exc:
            raise tool_error(exc) from exc
        out: dict[str, Any] = msgspec.to_builtins(result)
        return out

    @server.tool(description="Python stubs (.pyi) of the providers a run gets.")
    async def describe(
        ctx: Context,
        providers: list[str] | None = None,
        machine_id: str | None = None,
        instance_id: str | None = None,
    ) -> dict[str, str]:
        try:
            made = new_params(DescribeParams, providers=providers, machine_id=machine_id,
                              instance_id=instance_id)  # fmt: skip
            params = checked(made)
            return (await backend.describe(params, ctx)).stubs
        except FleetError as exc:
            raise tool_error(exc) from exc

    return server
