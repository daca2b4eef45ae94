"""``/mcp``: codemode's MCP server over streamable HTTP, on the gateway's own port.

The ``mcp`` SDK's transport is an ASGI app; ``services/gateway/mcp/asgi.py`` serves it from aiohttp,
so ``/mcp`` sits behind the same auth middleware (bearer token, bad-token rate limit), body
limit and security headers as ``/rpc``, and users reach one port. The transport is stateless:
every HTTP request is authenticated on its own and its tool calls run with that request's
caller, so there is no MCP session another token could take over, and any gateway replica can
answer any request.

The SDK is imported and its session manager started on the first ``/mcp`` request, not at the
gateway's start: its imports are about half of the gateway's (most of a second of CPU), which
every `fleet up` would pay before its banner, whether or not anyone speaks MCP to it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from base.first import first_of
from contracts.daemon.code import CodeRunResult
from contracts.errors import Unauthorized
from contracts.gateway.code import MACHINES_CODE_RUN, MachineCodeRunParams
from contracts.gateway.codemode import (
    CODEMODE_DESCRIBE,
    CODEMODE_RUN,
    MCP_PATH,
    DescribeParams,
    RunParams,
    RunResult,
    Stubs,
)
from contracts.gateway.rpc import METHOD_SCOPES
from contracts.rpc.jsonrpc import MethodSpec, P, R, decode_result, encode_call
from services.gateway.auth import Caller
from services.gateway.mcp.asgi import serve_asgi
from services.gateway.rpc import CodemodeOps

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

#: Where the caller travels from the HTTP request to the tool call (``request.state``).
CALLER_STATE = "fleet_caller"


class _OpsBackend:
    def __init__(self, ops: CodemodeOps) -> None:
        self._ops = ops

    async def run(self, params: RunParams, ctx: Context) -> RunResult:
        """Through the gateway's dispatcher, as ``POST /rpc`` would run it: its scope, its rate
        limit (the exec budget), its audit."""
        answer = await self._ops.dispatch(encode_call(CODEMODE_RUN, params, 1), _caller(ctx, None))
        assert answer is not None, "a request with an id is answered"
        return decode_result(CODEMODE_RUN, answer)

    async def describe(self, params: DescribeParams, ctx: Context) -> Stubs:
        return await self._ops.codemode_describe(params, _caller(ctx, CODEMODE_DESCRIBE.name))

    async def gateway(self, spec: MethodSpec[P, R], params: P, ctx: Context) -> R:
        """Through the gateway's dispatcher, as ``POST /rpc`` would run it."""
        answer = await self._ops.dispatch(encode_call(spec, params, 1), _caller(ctx, None))
        assert answer is not None, "a request with an id is answered"
        return decode_result(spec, answer)

    async def code_run(self, params: MachineCodeRunParams, ctx: Context) -> CodeRunResult:
        """Through the gateway's dispatcher, as ``POST /rpc`` would run it: its scope, its
        rate limit (the exec budget), its audit and its answer's size cap are that path's."""
        call = encode_call(MACHINES_CODE_RUN, params, 1)
        answer = await self._ops.dispatch(call, _caller(ctx, None))
        assert answer is not None, "a request with an id is answered"
        return decode_result(MACHINES_CODE_RUN, answer)


def _caller(ctx: Context, method: str | None) -> Caller:
    """The request's caller, doing what ``method`` needs (a tool is that method over MCP); as
    it came (None) for the dispatcher, which narrows it to its method's scope itself."""
    request = ctx.request_context.request
    caller = getattr(getattr(request, "state", None), CALLER_STATE, None)
    if not isinstance(caller, Caller):  # only reachable through /mcp, which authenticates
        raise Unauthorized("no caller on this MCP request")
    return caller if method is None else caller.doing(METHOD_SCOPES[method])


def _session_manager(ops: CodemodeOps, max_body_bytes: int) -> StreamableHTTPSessionManager:
    """The SDK's session manager for codemode's tools (the SDK imported here)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from controlplane import mcp_tools

    server = mcp_tools.build_server(_OpsBackend(ops))
    # The Host/Origin checks guard a token-less local server against DNS rebinding; every
    # /mcp request carries a bearer token (never a cookie), and the gateway's host is the
    # operator's to choose, so they are off.
    server.streamable_http_app(
        stateless_http=True,
        max_request_body_size=max_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager: StreamableHTTPSessionManager = server.session_manager
    return manager


class McpEndpoint:
    """The SDK's session manager, started by the first ``/mcp`` request and running until the
    gateway stops (an async context manager).

    The SDK is imported in a thread, so that the event loop goes on serving other requests
    meanwhile; requests that arrive during the start wait for it. A start that failed is tried
    again by the next request. The manager runs in a task of its own: its anyio task group
    must be entered and left by one task, and the gateway's shutdown is another.
    """

    def __init__(self, ops: CodemodeOps, max_body_bytes: int) -> None:
        self._ops = ops
        self._max_body_bytes = max_body_bytes
        self._starting: asyncio.Task[StreamableHTTPSessionManager] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> StreamableHTTPSessionManager:
        manager = await asyncio.to_thread(_session_manager, self._ops, self._max_body_bytes)
        started = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(manager, started))
        # Neither is cancelled by the race: the manager runs on until the gateway stops.
        which, _ = await first_of(asyncio.shield(started), asyncio.wait({self._task}))
        if which == 1:
            self._task.result()  # raises why it could not start
        return manager

    async def _run(
        self, manager: StreamableHTTPSessionManager, started: asyncio.Future[None]
    ) -> None:
        async with manager.run():
            started.set_result(None)
            await self._stop.wait()

    async def _manager(self) -> StreamableHTTPSessionManager:
        if self._stop.is_set():
            raise web.HTTPServiceUnavailable(text="the gateway is stopping")
        if self._starting is None or (self._starting.done() and self._starting.exception()):
            self._starting = asyncio.create_task(self._start())
        # Shielded: a request that goes away does not cancel the start the others wait for.
        return await asyncio.shield(self._starting)

    async def __aenter__(self) -> McpEndpoint:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._starting is not None:
            await asyncio.wait({self._starting})  # a start under way ends: its manager stops
        if self._task is not None:
            await self._task

    async def handle(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        manager = await self._manager()
        extra: dict[str, Any] = {CALLER_STATE: caller}
        return await serve_asgi(manager.handle_request, request, extra)


def add_mcp_route(
    app: web.Application, endpoint: McpEndpoint, caller_key: web.RequestKey[Caller]
) -> None:
    async def mcp(request: web.Request) -> web.StreamResponse:
        return await endpoint.handle(request, request[caller_key])

    app.router.add_route("*", MCP_PATH, mcp)
