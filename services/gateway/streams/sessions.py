"""Interactive sessions: ``sessions.*`` and the attach WebSocket (contracts.gateway.sessions).

``sessions.open`` is one daemon call through the gateway's shared daemon-call path
(``DaemonCalls``), the list, resize and close pass through to the daemon's
(``MethodSpec.passes``). The WebSocket joins a byte stream the daemon opens for
it (``session.attach``, through the gateway's one stream opener) and relays both ways; a
resize from the client travels on that stream as a record, between the keys typed before and
after it. It holds no session state (the daemon does), so
any gateway replica serves any reattach, and it buffers nothing of its own: it takes the next
chunk from the stream (granting the daemon credit) only once the socket took the last one, and
reads the next client frame only once the daemon granted room for the last one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import WSMsgType, web

from base.byte_stream import ByteStream
from base.relay import relay
from contracts.daemon import rpc as d, sessions as ss
from contracts.errors import InvalidParams, StreamAborted
from contracts.gateway import sessions as gs
from contracts.gateway.audit import Action
from contracts.gateway.sessions import SESSIONS_OPEN
from contracts.ids import MACHINE_ID_RE
from contracts.rpc.jsonrpc import handles
from services.gateway.auth import Caller
from services.gateway.errors_http import close_reason
from services.gateway.rpc import DaemonCalls
from services.gateway.streams.opener import ByteStreamOpener, Socket

log = structlog.get_logger(__name__)
#: The largest frame a client may send (typed input or a control message).
MAX_CLIENT_FRAME = 64 * 1024
_SESSION_ID = msgspec.json.Decoder(ss.SessionId)
_CONTROL = msgspec.json.Decoder(gs.ClientControl)
_ENCODE = msgspec.json.Encoder()


class SessionOps:
    def __init__(self, *, call: DaemonCalls, opener: ByteStreamOpener,
                 attached: Callable[[str], Awaitable[None]] | None = None) -> None:  # fmt: skip
        self.call = call
        self.opener = opener
        #: Run once a session opened (a devcontainer's postAttachCommand: environments/hook.py).
        self.attached = attached

    @handles(SESSIONS_OPEN)
    async def sessions_open(self, p: gs.SessionsOpenParams, c: Caller) -> gs.OpenedSession:
        fields = msgspec.structs.asdict(p)
        del fields["machine_id"]
        params = ss.SessionOpenParams(**fields)
        info = await self.call(c, p.machine_id, d.SESSION_OPEN, params)
        log.info("session.opened", machine_id=p.machine_id, session_id=info.session_id,
                 by=c.token_id)  # fmt: skip
        if self.attached is not None:
            await self.attached(p.machine_id)
        path = gs.attach_path(p.machine_id, info.session_id)
        return gs.OpenedSession(**msgspec.structs.asdict(info), machine_id=p.machine_id,
                                attach_path=path)  # fmt: skip

    # --- the WebSocket ------------------------------------------------------------------------
    async def attach(self, request: web.Request, c: Caller) -> web.StreamResponse:
        machine_id, session_id = request.match_info["machineId"], request.match_info["sessionId"]
        _check_ids(machine_id, session_id)  # a FleetError here: http answers it, no upgrade
        params = ss.SessionAttachParams(session_id=session_id, input_records=True)
        # Typing is activity (a session in use keeps its machine from auto-stop); its output
        # is not: a log tailing in a forgotten tab must not keep a machine awake for ever.
        _, stream = await self.opener.open(c, machine_id, d.SESSION_ATTACH, params,
                                           window=params.window, chunk_size=params.chunk_size,
                                           traffic="sent",
                                           audit=Action.TERMINAL_ATTACH)  # fmt: skip
        ws = web.WebSocketResponse(max_msg_size=MAX_CLIENT_FRAME, heartbeat=30.0)
        try:
            await ws.prepare(request)
            log.info("session.attached", machine_id=machine_id, session_id=session_id,
                     by=c.token_id)  # fmt: skip
            await relay_terminal(ws, stream)
        finally:
            await stream.aclose()
            await ws.close()
        return ws


def _check_ids(machine_id: str, session_id: str) -> None:
    if not MACHINE_ID_RE.fullmatch(machine_id):
        raise InvalidParams("not a machine id", field="machineId")
    try:
        _SESSION_ID.decode(_ENCODE.encode(session_id))
    except msgspec.ValidationError:
        raise InvalidParams("not a session id", field="sessionId") from None


async def relay_terminal(ws: Socket, stream: ByteStream) -> None:
    """The session's records to the client and its typing and resizes to the session, until
    the session exits, the client leaves, or either side breaks."""
    try:
        await relay(_to_client(ws, stream), _from_client(ws, stream), until="either")
    except StreamAborted as exc:
        log.info("session.stream_lost", stream_id=stream.stream_id, reason=exc.message)
        await ws.close(code=gs.CLOSE_ABORTED, message=close_reason(exc))
    except ss.RecordError as exc:  # the machine sent garbage: its stream is done for
        log.warning("session.bad_output", stream_id=stream.stream_id, error=str(exc))
        await stream.abort(f"bad output from the machine: {exc}")
        await ws.close(code=gs.CLOSE_ABORTED, message=b"bad output from the machine")
    except ConnectionError:
        log.info("session.client_gone", stream_id=stream.stream_id)


async def _to_client(ws: Socket, stream: ByteStream) -> None:
    reader = ss.RecordReader()
    while chunk := await stream.receive():  # credit back to the daemon as the socket drains
        for kind, payload in reader.feed(chunk):
            if kind is not ss.RecordKind.NOTICE:  # a pipe session's stderr comes as its output
                await ws.send_bytes(payload)
            else:
                notice = ss.decode_notice(payload)
                await ws.send_str(_ENCODE.encode(gs.Dropped(bytes=notice.bytes)).decode())
    await ws.send_str(_ENCODE.encode(gs.Exited(code=stream.end_code)).decode())
    await ws.close(code=1000, message=b"exited")


async def _from_client(ws: Socket, stream: ByteStream) -> None:
    """Typed bytes and resizes onto the stream, as records in the order the client sent them;
    each waits for the daemon's credit, and the socket is not read meanwhile."""
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await stream.send(ss.encode_record(ss.RecordKind.INPUT, msg.data))
        elif msg.type is WSMsgType.TEXT:
            await _control(ws, stream, msg.data)
        else:
            break
    # The client left or closed: detach (the session goes on without it).
    with contextlib.suppress(StreamAborted):
        await stream.end()


async def _control(ws: Socket, stream: ByteStream, text: str) -> None:
    try:
        control = _CONTROL.decode(text)
    except msgspec.DecodeError as exc:
        problem = gs.BadControl(message=f"control message refused: {exc}")
        await ws.send_str(_ENCODE.encode(problem).decode())
        return
    await stream.send(ss.encode_resize(control.cols, control.rows))
