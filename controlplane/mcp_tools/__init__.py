"""fleetd's MCP server: codemode's tools ``run_code`` and ``describe``, and
``machines_code_run`` (``machines.code.run``: code in a machine's stateful kernel), defined once
and served twice:
by ``fleet mcp`` over stdio (through a ``FleetClient``) and by the gateway's ``/mcp`` over
streamable HTTP (through ``CodemodeOps``, with the caller of each HTTP request).

A backend gets params checked as ``POST /rpc`` checks them. A ``FleetError`` (a bad argument,
a refused instance) becomes the tool's error result, its text naming the JSON-RPC code and data
(the SDK would otherwise hide the text of any other exception) and the tool call's MCP ``Context``
(the gateway reads its caller from there).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent

from contracts.daemon.code import DEFAULT_CODE_TIMEOUT_S, CodeRunResult, MimeBundle
from contracts.errors import FleetError
from contracts.gateway.code import MachineCodeRunParams
from contracts.gateway.codemode import (
    DEFAULT_TIMEOUT_S,
    DescribeParams,
    RunParams,
    RunResult,
    Stubs,
)
from contracts.rpc.jsonrpc import MethodSpec, P, R, invalid_params, new_params

NAME = "fleetd-codemode"
INSTRUCTIONS = (
    "Run Python against a fleetd fleet. Call `describe` first: it returns the type stubs of "
    "`fleet` (every gateway method), `machine` (when you pass machine_id) and the instance's "
    "bridges. `run_code` runs your code in a sandbox with top-level await; the value of the "
    "last expression is the result, print() output comes back as logs. `machines_code_run` "
    "runs code in a machine's own stateful Jupyter kernel (variables persist between calls). "
    "`computer` drives a machine's desktop (screen, mouse, keyboard) as Anthropic's computer "
    "tool does."
)
CODE_RUN_TOOL = "machines_code_run"
#: The MIME types an MCP client is sent as image content (MCP's images are raster, base64).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: Colour codes in IPython's tracebacks: a model reads them as noise.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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

    async def code_run(self, params: MachineCodeRunParams, ctx: Context) -> CodeRunResult: ...

    async def gateway(self, spec: MethodSpec[P, R], params: P, ctx: Context) -> R:
        """A gateway method, as ``POST /rpc`` runs it (the ``computer`` tool's)."""
        ...


def _result_content(bundle: MimeBundle) -> list[ContentBlock]:
    """One result as a model reads it: its images as images, else its text."""
    kinds = [t for t in IMAGE_TYPES if isinstance(bundle.get(t), str)]
    images: list[ContentBlock] = [ImageContent(data=bundle[t], mime_type=t) for t in kinds]
    text = bundle.get("text/plain")
    if images or not isinstance(text, str):
        return images or [TextContent(text=f"[a result of {', '.join(_mimes(bundle))}]")]
    return [TextContent(text=text)]


def _mimes(bundle: MimeBundle) -> list[str]:
    return sorted(k for k in bundle if "/" in k)


def code_content(result: CodeRunResult) -> CallToolResult:
    """``machines.code.run``'s answer as an MCP tool result: stdout, stderr, each result (an
    image as MCP image content) and the error (its traceback without colour codes) as content;
    the answer itself as structured content, its images left out (they are in the content, and
    a model would read their base64 twice). An error in the code is the tool's error."""
    content: list[ContentBlock] = []
    for name, chunks in (("stdout", result.stdout), ("stderr", result.stderr)):
        if chunks:
            content.append(TextContent(text=f"[{name}]\n{''.join(chunks)}"))
    for bundle in result.results:
        content.extend(_result_content(bundle))
    if result.error is not None:
        trace = _ANSI.sub("", "\n".join(result.error.traceback))
        content.append(TextContent(text=f"{result.error.name}: {result.error.value}\n{trace}"))
    if result.truncated:
        content.append(TextContent(text="[truncated: the output passed the answer's size cap]"))
    data: dict[str, Any] = msgspec.to_builtins(result)
    data["results"] = [{k: v for k, v in b.items() if k not in IMAGE_TYPES} for b in result.results]
    return CallToolResult(content=content, structured_content=data,
                          is_error=result.error is not None)  # fmt: skip


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

    _add_code_run(server, backend)
    from controlplane.mcp_tools.computer import add_computer

    add_computer(server, backend, tool_error)
    return server


def _add_code_run(server: MCPServer[Any], backend: CodemodeBackend) -> None:
    @server.tool(
        name=CODE_RUN_TOOL,
        description="Run code in a machine's stateful Jupyter kernel (machines.code.run): what "
        "one call defines the next sees. Its context_id, or the machine's default context for "
        "language (default python). Answers stdout, stderr, results (images as images) and the "
        "error.",
    )
    async def machines_code_run(
        machine_id: str,
        code: str,
        ctx: Context,
        language: str | None = None,
        context_id: str | None = None,
        timeout_s: float = DEFAULT_CODE_TIMEOUT_S,
    ) -> CallToolResult:
        try:
            params = checked(new_params(MachineCodeRunParams, machine_id=machine_id, code=code,
                                        language=language, context_id=context_id,
                                        timeout_s=timeout_s))  # fmt: skip
            result = await backend.code_run(params, ctx)
        except FleetError as exc:
            raise tool_error(exc) from exc
        return code_content(result)
