"""Tunnels to a machine's ports: how the gateway opens one, and ``GET TUNNEL_PATH``, the
WebSocket that ``fleet machines forward`` and ``fleet machines tunnel`` use for one TCP
connection.

The gateway never connects to a machine's address: a tunnel is ``tool.tunnelConnect`` on the
machine's own daemon (a signed RPC, after the caller's access to that machine was checked),
and then a byte stream on that machine's subjects. So the only ports it can reach are the
loopback ports of a machine the caller may already reach into, through that machine's daemon.

On the WebSocket, binary frames are the connection's bytes both ways; a text frame
``{"type":"eof"}`` half-closes the sender's direction; when both directions have ended the
gateway closes with 1000, and a broken tunnel closes with 1011 and the reason. Back-pressure:
a frame from the client is taken only once the stream has credit for the previous one (so a
fast client fills its own socket, not the gateway), and a chunk from the daemon is taken (which
grants it more credit) only once the WebSocket took the previous one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import structlog
from aiohttp import WSMsgType, web

from base.byte_stream import ByteStream
from base.clock import SYSTEM_CLOCK, Clock
from base.relay import relay
from contracts.bus.events import WakeBy
from contracts.daemon.desktop import VIEW_PORT
from contracts.errors import FleetError, InvalidParams, StreamAborted, Unauthorized
from contracts.gateway.audit import Action
from contracts.ids import MACHINE_ID_RE
from contracts.people import MACHINES_EXEC, PORTS
from contracts.ports import EOF_FRAME, TUNNEL_CONNECT, TunnelConnectParams
from controlplane.calls.byte_stream_join import PlatformStream
from services.gateway.auth import BadSecrets, Caller, origin_of
from services.gateway.errors_http import close_reason
from services.gateway.rpc import open_woken, wake_for
from services.gateway.streams.opener import ByteStreamOpener, Socket

log = structlog.get_logger(__name__)

CallerResolver = Callable[[str], Awaitable[Caller | None]]
#: The largest WebSocket message a tunnel client may send (it sends what it read, <= 64 KiB).
MAX_FRAME = 1024 * 1024
#: A tunnel's chunk size and window, each way (bench 15 measured 64/256 KiB chunks).
CHUNK = 256 * 1024
WINDOW = 8 * CHUNK
#: WebSocket close codes: both directions ended / the tunnel broke.
CLOSE_DONE = 1000
CLOSE_BROKEN = 1011


class Tunnels:
    """Opens tunnels for callers; the port routes' shared context. A woken port's wait is
    ``clock``'s time."""

    def __init__(self, *, opener: ByteStreamOpener, resolve: CallerResolver,
                 guesses: BadSecrets, clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self.opener = opener
        self.resolve = resolve
        self.guesses = guesses
        self.clock = clock

    async def open(self, caller: Caller, machine_id: str, port: int, audit: str | None = None,
                   wake: WakeBy = WakeBy.TUNNEL,
                   woken: bool = False) -> PlatformStream:  # fmt: skip
        """A stream joined to ``127.0.0.1:<port>`` in the machine, if the caller may reach it.
        Port traffic either way is activity: a forwarded dev server in use stays up. ``audit``:
        the action the audit log records (a preview's requests are not recorded one by one:
        its ticket is). ``wake``: what a paused or stopped machine is woken by; ``woken``: it
        was just woken (``wake``), and its port may take a moment to listen."""
        params = TunnelConnectParams(port=port, chunk_size=CHUNK, window=WINDOW)
        opened = partial(self.opener.open, caller.doing(port_scope(port)), machine_id,
                         TUNNEL_CONNECT,
                         params, window=WINDOW, chunk_size=CHUNK, audit=audit,
                         wake=wake)  # fmt: skip
        _, stream = await open_woken(opened, woken, self.clock)
        return stream

    async def wake(self, caller: Caller, machine_id: str, by: WakeBy, within_s: float | None,
                   audit: tuple[str, int] | None = None) -> bool | None:  # fmt: skip
        """``services.gateway.rpc.wake.wake_for``, with the scope a port's call needs. ``audit``:
        the action and port whose opening this wake comes before; a refusal here (a caller
        who may not reach the port) is recorded as that opening's would be."""
        doing = caller.doing(PORTS)
        try:
            return await wake_for(self.opener.access, doing, machine_id, by, within_s)
        except FleetError as exc:
            if audit is not None:
                action, port = audit
                params = TunnelConnectParams(port=port, chunk_size=CHUNK, window=WINDOW)
                self.opener.record(action, doing, machine_id, params, exc)
            raise

    async def bearer_caller(self, request: web.Request, token: str) -> Caller:
        """The caller of a bearer token; a client that keeps sending bad ones is refused."""
        caller = await self.resolve(token) if token else None
        if caller is None:
            refused = Unauthorized("missing or invalid bearer token")
            raise self.guesses.refuse("token", request.remote or "", refused)
        return caller.coming_from(origin_of(request))


def port_scope(port: int) -> str:
    """What opening ``port`` of a machine takes: ``ports``, and ``machines:exec`` for the
    desktop's live view that takes input (it drives the machine's mouse and keyboard, as
    ``machines.desktop.act`` does); its view-only twin is an ordinary port."""
    return MACHINES_EXEC if port == VIEW_PORT else PORTS


def target(request: web.Request) -> tuple[str, int]:
    """The machine id and port of a ports route, validated."""
    machine_id = request.match_info["machine_id"]
    if not MACHINE_ID_RE.fullmatch(machine_id):  # `$` alone lets "...\n" in
        raise InvalidParams(f"{machine_id!r} is not a machine id", field="machineId")
    raw = request.match_info["port"]
    if not raw.isdigit() or not 1 <= int(raw) <= 65535 or raw != str(int(raw)):
        raise InvalidParams(f"{raw!r} is not a TCP port (1-65535)", field="port")
    return machine_id, int(raw)


async def serve_tunnel_ws(
    request: web.Request, tunnels: Tunnels, bearer: str
) -> web.StreamResponse:
    """``GET TUNNEL_PATH``: authenticated and opened before the upgrade, so a bad token, another
    instance's machine or a closed port is a plain HTTP error with a JSON-RPC error body."""
    machine_id, port = target(request)
    caller = await tunnels.bearer_caller(request, bearer)
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=30.0, compress=False)
    if not ws.can_prepare(request).ok:  # checked before a tunnel is opened for nothing
        raise InvalidParams("a tunnel is a WebSocket: send Upgrade: websocket", field="Upgrade")
    woken = await tunnels.wake(caller, machine_id, WakeBy.TUNNEL, None,
                               audit=(Action.TUNNEL_OPEN, port))  # fmt: skip
    stream = await tunnels.open(
        caller, machine_id, port, audit=Action.TUNNEL_OPEN, woken=bool(woken)
    )
    try:
        await ws.prepare(request)
        code, reason = await relay_tunnel(ws, stream)
        await ws.close(code=code, message=reason.encode()[:120])
        return ws
    finally:
        await stream.aclose()


async def relay_tunnel(ws: Socket, stream: ByteStream) -> tuple[int, str]:
    """Relay both ways until both directions ended (1000) or either broke (1011)."""
    try:
        await relay(_ws_to_stream(ws, stream), _stream_to_ws(ws, stream), until="both")
        return CLOSE_DONE, ""
    except StreamAborted as exc:
        return CLOSE_BROKEN, close_reason(exc).decode()
    except (ConnectionError, _ClientLeft) as exc:
        await stream.abort("the client left")
        return CLOSE_BROKEN, str(exc) or "the client left"


class _ClientLeft(Exception):
    """The WebSocket closed before the client ended its direction."""


async def _ws_to_stream(ws: Socket, stream: ByteStream) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await stream.send(msg.data)  # waits for credit: the next frame is not read
        elif msg.type is WSMsgType.TEXT and msg.data == EOF_FRAME:
            await stream.end()
            return
        else:
            raise _ClientLeft(f"unexpected {msg.type.name} message on a tunnel")
    raise _ClientLeft("the client closed the tunnel before its end")


async def _stream_to_ws(ws: Socket, stream: ByteStream) -> None:
    async for chunk in stream:
        await ws.send_bytes(chunk)  # drains: the daemon gets credit as the client reads
    await ws.send_str(EOF_FRAME)
