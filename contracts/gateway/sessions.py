"""Gateway methods and the WebSocket of interactive sessions (terminals on a machine).

``sessions.open/list/resize/signal/write/close`` are ordinary JSON-RPC methods. A client
attaches to a session with a WebSocket at ``ATTACH_PATH`` (authenticated like ``GET /events``:
the Authorization header, or ``?ticket=`` from ``events.ticket``). Binary frames carry terminal
bytes both ways (of a session on pipes: its stdout and its stderr alike): first the session's
scrollback, then live output. Text frames carry JSON control messages: from the client
``Resize``; from the gateway ``Dropped`` (output it was too slow for) and ``Exited`` (the
command's exit code), after which the socket closes with 1000.
A socket closed with ``CLOSE_ABORTED`` lost its session (closed, or its machine went away).
"""

from __future__ import annotations

import msgspec

from contracts.daemon import rpc as d
from contracts.daemon.sessions import (
    Cols,
    Rows,
    SessionClosed,
    SessionId,
    SessionInfo,
    SessionList,
    SessionOpenParams,
    SessionSignaled,
    SessionSignalParams,
    SessionWriteParams,
    SessionWritten,
)
from contracts.errors import (
    BadPath,
    DaemonTimeout,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    NotFound,
    RateLimited,
    ToolError,
    TooManyStreams,
)
from contracts.gateway.types import MachineId
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params
from contracts.rpc.pass_through import PassThrough

_MachineId = MachineId
#: ``GET`` with a WebSocket upgrade; ``{machineId}`` and ``{sessionId}`` as the methods name them.
ATTACH_PATH = "/machines/{machineId}/sessions/{sessionId}/attach"
#: The close code of a socket whose session was lost (not an exit: that closes with 1000).
CLOSE_ABORTED = 4000


def attach_path(machine_id: str, session_id: str) -> str:
    return f"/machines/{machine_id}/sessions/{session_id}/attach"


class SessionsOpenParams(SessionOpenParams, kw_only=True):
    """``session.open``'s params, on a machine."""

    machine_id: _MachineId


class MachineSessions(Params, kw_only=True):
    machine_id: _MachineId


class MachineSessionRef(Params, kw_only=True):
    machine_id: _MachineId
    session_id: SessionId


class SessionsResizeParams(Params, kw_only=True):
    machine_id: _MachineId
    session_id: SessionId
    cols: Cols
    rows: Rows


class SessionsSignalParams(SessionSignalParams, kw_only=True):
    machine_id: _MachineId


class SessionsWriteParams(SessionWriteParams, kw_only=True):
    machine_id: _MachineId


class OpenedSession(SessionInfo, kw_only=True):
    machine_id: str
    #: Where to attach (the WebSocket path on this gateway).
    attach_path: str


# --- WebSocket control messages (text frames) ----------------------------------------------
class Resize(msgspec.Struct, tag_field="type", tag="resize"):
    cols: Cols
    rows: Rows


class Dropped(msgspec.Struct, tag_field="type", tag="dropped"):
    """Bytes of output this client missed (it was too slow; the others were not held up)."""

    bytes: int


class Exited(msgspec.Struct, tag_field="type", tag="exit"):
    code: int | None


class BadControl(msgspec.Struct, tag_field="type", tag="error"):
    """A text frame the gateway could not take (the socket stays open)."""

    message: str


ClientControl = Resize
ServerControl = Dropped | Exited | BadControl

_ERRORS = (NotFound, Forbidden, InvalidParams, DaemonUnavailable, DaemonTimeout)

SESSIONS_OPEN = MethodSpec(
    "sessions.open",
    SessionsOpenParams,
    OpenedSession,
    "Start a session (default: the login shell) on a machine's pseudo-terminal, or on pipes "
    f"with pty false; attach to it with a WebSocket at {ATTACH_PATH}.",
    (*_ERRORS, ToolError, BadPath, TooManyStreams, RateLimited),
    scope="machines:exec",
    budget="exec",
    hand_written=True,
)
SESSIONS_LIST = MethodSpec(
    "sessions.list",
    MachineSessions,
    SessionList,
    "A machine's sessions.",
    _ERRORS,
    scope="machines:exec",
    reads=True,
    client=ClientMethod("list_sessions", "machine_id", unwrap="sessions"),
    passes=PassThrough(d.SESSION_LIST),
)
SESSIONS_RESIZE = MethodSpec(
    "sessions.resize",
    SessionsResizeParams,
    SessionInfo,
    "Set a session's terminal size.",
    _ERRORS,
    scope="machines:exec",
    client=ClientMethod("resize_session", "machine_id session_id cols rows"),
    passes=PassThrough(d.SESSION_RESIZE),
)
SESSIONS_SIGNAL = MethodSpec(
    "sessions.signal",
    SessionsSignalParams,
    SessionSignaled,
    "Send a signal (9: SIGKILL, 15: SIGTERM, 2: SIGINT, ...) to a session's process group.",
    _ERRORS,
    scope="machines:exec",
    client=ClientMethod("signal_session", "machine_id session_id signal", unwrap="signaled"),
    passes=PassThrough(d.SESSION_SIGNAL),
)
SESSIONS_WRITE = MethodSpec(
    "sessions.write",
    SessionsWriteParams,
    SessionWritten,
    "Write bytes (base64) to a session's input; eof true then closes a pipe session's stdin.",
    _ERRORS,
    scope="machines:exec",
    client=ClientMethod("write_session", "machine_id session_id data", unwrap="written"),
    passes=PassThrough(d.SESSION_WRITE),
)
SESSIONS_CLOSE = MethodSpec(
    "sessions.close",
    MachineSessionRef,
    SessionClosed,
    "Hang up a session and forget it; attached clients get its exit code.",
    _ERRORS,
    scope="machines:exec",
    client=ClientMethod("close_session", "machine_id session_id", unwrap="closed"),
    passes=PassThrough(d.SESSION_CLOSE),
)

SESSION_METHODS: tuple[AnySpec, ...] = (
    SESSIONS_OPEN,
    SESSIONS_LIST,
    SESSIONS_RESIZE,
    SESSIONS_SIGNAL,
    SESSIONS_WRITE,
    SESSIONS_CLOSE,
)
