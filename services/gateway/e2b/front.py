"""The E2B front's one listener: E2B's control API, and each sandbox's own APIs (envd on port
49983, the code interpreter on 49999), told apart per request (``sandbox.target_of``).

Every call becomes one or more of fleetd's methods, run as the caller whose API key or access
token it came with: nothing here carries out what fleetd's methods do (docs/e2b.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from contracts.e2b import control as api, envd
from contracts.errors import FleetError, MethodNotFound, NotFound, Unauthorized
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Caller, CallerResolver, current_caller
from services.gateway.e2b import connect
from services.gateway.e2b.calls import Calls, Dispatch
from services.gateway.e2b.control import add_control_routes
from services.gateway.e2b.ends import SandboxEnds
from services.gateway.e2b.envd_files import Filesystem, Homes
from services.gateway.e2b.envd_http import Files
from services.gateway.e2b.envd_process import Asked, Processes
from services.gateway.e2b.envd_watch import Watches
from services.gateway.e2b.interpreter import Interpreter
from services.gateway.e2b.sandbox import (
    Doorman,
    Target,
    health,
    host_pattern,
    http_error,
    target_of,
)
from services.gateway.e2b.sandboxes import Sandboxes
from services.gateway.previews import PortTarget, serve_port
from services.gateway.rpc import Waker
from services.gateway.streams import ByteStreamOpener, Tunnels

#: ``await rpc(machineId, request, caller)``: one unary Connect method of a sandbox...
Unary = Callable[[str, Any, Caller], Awaitable[msgspec.Struct]]
#: ...``rpc(machineId, request, caller, asked)``, a server stream's messages...
Stream = Callable[[str, Any, Caller, Asked], AsyncIterator[msgspec.Struct]]
#: ...and ``await rpc(machineId, requests, caller)``, a client stream's answer.
ClientStream = Callable[[str, AsyncIterator[Any], Caller], Awaitable[msgspec.Struct]]


class E2bFront:
    def __init__(self, *, settings: Settings, store: Store, box: SecretBox, dispatch: Dispatch,
                 resolve: CallerResolver, waker: Waker, opener: ByteStreamOpener,
                 tunnels: Tunnels) -> None:  # fmt: skip
        self.settings = settings
        self.store = store
        self.calls = Calls(dispatch)
        self.resolve = resolve
        self.sandboxes = Sandboxes(store=store, calls=self.calls, waker=waker, box=box,
                                   settings=settings)  # fmt: skip
        self.doorman = Doorman(store, tunnels.guesses)
        self.tunnels = tunnels
        #: Carries out sandboxes' timeouts (entered with the gateway's other parts).
        self.ends = SandboxEnds(store, self.calls)
        homes = Homes(self.calls)
        self.filesystem = Filesystem(self.calls, homes)
        self.files = Files(store, box, self.doorman, opener, homes)
        self.interpreter = Interpreter(self.calls, homes)
        #: The polled watchers (entered with the gateway's other parts).
        self.watches = Watches(self.calls, homes, self.filesystem)
        self.processes = Processes(self.calls, opener)
        fs, w, p = self.filesystem, self.watches, self.processes
        #: The Connect methods, by path: unary ones and server streams.
        self.unary: dict[str, tuple[type[msgspec.Struct], Unary]] = {
            "/filesystem.Filesystem/Stat": (envd.PathRequest, fs.stat),
            "/filesystem.Filesystem/ListDir": (envd.ListDirRequest, fs.list_dir),
            "/filesystem.Filesystem/Remove": (envd.PathRequest, fs.remove),
            "/filesystem.Filesystem/MakeDir": (envd.PathRequest, fs.make_dir),
            "/filesystem.Filesystem/Move": (envd.MoveRequest, fs.move),
            "/filesystem.Filesystem/CreateWatcher": (envd.WatchDirRequest, w.create),
            "/filesystem.Filesystem/GetWatcherEvents": (envd.WatcherRef, w.events),
            "/filesystem.Filesystem/RemoveWatcher": (envd.WatcherRef, w.remove),
            "/process.Process/List": (envd.Empty, p.list),
            "/process.Process/SendInput": (envd.SendInputRequest, p.send_input),
            "/process.Process/SendSignal": (envd.SendSignalRequest, p.send_signal),
            "/process.Process/CloseStdin": (envd.SelectRequest, p.close_stdin),
            "/process.Process/Update": (envd.UpdateRequest, p.update),
        }
        self.streams: dict[str, tuple[type[msgspec.Struct], Stream]] = {
            "/filesystem.Filesystem/WatchDir": (envd.WatchDirRequest, w.stream),
            "/process.Process/Start": (envd.StartRequest, p.start),
            "/process.Process/Connect": (envd.SelectRequest, p.connect),
        }
        self.client_streams: dict[str, tuple[type[msgspec.Struct], ClientStream]] = {
            "/process.Process/StreamInput": (envd.StreamInputRequest, p.stream_input),
        }

    def domain(self, port: int) -> str:
        """The domain of sandboxes' host names (``FLEET_E2B_DOMAIN``, else this listener's)."""
        return self.settings.e2b_domain or f"localhost:{port}"

    def app(self, port: int) -> web.Application:
        """The listener's app (``port``: the one it listens on, for its default domain)."""
        hosts = host_pattern(self.domain(port))

        @web.middleware
        async def by_target(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                target = target_of(request, hosts)
            except FleetError as exc:
                return http_error(exc)
            if target is None:
                answer: web.StreamResponse = await handler(request)
                return answer
            return await self.serve_sandbox(request, target)

        app = web.Application(middlewares=[by_target], client_max_size=connect.MAX_MESSAGE)
        add_control_routes(app, self.sandboxes, self.calls, self.resolve)
        return app

    async def serve_sandbox(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.port == api.INTERPRETER_PORT:
            try:  # a port of the sandbox's, as on E2B: its traffic token opens it too
                caller = await self.doorman.visitor(request, target)
            except FleetError as exc:
                return http_error(exc)
            return await self.interpreter.serve(request, target.sandbox_id, caller)
        if target.port != api.ENVD_PORT:
            return await self.serve_port(request, target)
        if request.path == "/health":
            return await health(self.store, target)
        if request.path == "/files":
            return await self.files.serve(request, target)
        return await self._rpc(request, target)

    async def _rpc(self, request: web.Request, target: Target) -> web.StreamResponse:
        """One of envd's Connect methods, as the caller its access token runs as."""
        unary, stream = self.unary.get(request.path), self.streams.get(request.path)
        client_stream = self.client_streams.get(request.path)
        if request.method != "POST" or (unary is None and stream is None and client_stream is None):
            return http_error(MethodNotFound(f"{request.method} {request.path}: no such envd "
                                              "method"))  # fmt: skip
        try:
            caller = await self.doorman.caller(request, target)
        except FleetError as exc:
            if stream is not None:
                return await connect.server_stream(request, msgspec.Struct, _refused(exc))
            if client_stream is not None:
                return await connect.client_stream(request, msgspec.Struct, _raise(exc))
            return await connect.unary(request, msgspec.Struct, _raise(exc))
        sandbox_id = target.sandbox_id
        if unary is not None:
            kind, run = unary
            return await connect.unary(request, kind, lambda m: run(sandbox_id, m, caller))
        if client_stream is not None:
            ckind, take = client_stream
            return await connect.client_stream(request, ckind,
                                               lambda ms: take(sandbox_id, ms, caller))  # fmt: skip
        assert stream is not None
        skind, messages = stream
        asked = Asked.of(request)
        return await connect.server_stream(
            request, skind, lambda m: messages(sandbox_id, m, caller, asked)
        )

    async def serve_port(self, request: web.Request, target: Target) -> web.StreamResponse:
        """A sandbox's own port (``get_host``): its program behind fleetd's previews; open to
        anyone who has its host name unless it was made with ``allowPublicTraffic: false``
        (then its traffic token is asked), as E2B's are, with its maker's rights."""
        try:
            record = await self.store.e2b.get(target.sandbox_id)
            if record is None:
                raise NotFound(f"sandbox {target.sandbox_id} not found")
            if record.public_traffic:
                caller = await current_caller(self.store, record.made_by)
                if caller is None:
                    raise Unauthorized("the sandbox's maker no longer stands")
            else:
                caller = await self.doorman.visitor(request, target)
        except FleetError as exc:
            return http_error(exc)
        port = PortTarget(target.sandbox_id, target.port, "/")
        return await serve_port(request, self.tunnels, caller, port, strip_authorization=False)


def _refused(exc: FleetError) -> Callable[[Any], AsyncIterator[msgspec.Struct]]:
    async def refuse(_: Any) -> AsyncIterator[msgspec.Struct]:
        raise exc
        yield  # a generator: the refusal ends its stream

    return refuse


def _raise(exc: FleetError) -> Callable[[Any], Awaitable[msgspec.Struct]]:
    async def refuse(_: Any) -> msgspec.Struct:
        raise exc

    return refuse
