"""Gateway methods that follow a machine live: streamed exec and the daemon's own log.

``machines.execStream`` is an ordinary JSON-RPC method on ``POST /rpc`` (it answers once, like
``machines.exec``); POSTed to ``RPC_STREAM_PATH`` the same request answers as server-sent
events: one ``output`` event per chunk (an ``OutputChunk``) as the command produces it, then one
``result`` event whose data is the JSON-RPC response. Closing that response (Ctrl-C) kills the
command's process group on the machine.

``machines.code.run`` (contracts.gateway.code) streams the same way: one ``output`` event per
part of its answer (a ``CodeRunPart``: a chunk of stdout or stderr, a result, the error) as the
kernel sends it, then the ``result`` event with the answer the plain call gives.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.daemon.rpc import DAEMON_LOG, DaemonLogResult, ExecCommandParams, ExecCommandResult
from contracts.errors import (
    DaemonTimeout,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    MachineStopped,
    NotFound,
    NotSupported,
    ToolError,
)
from contracts.gateway.wire_names import (
    MACHINES_EXEC_STREAM as _EXEC_STREAM,
    RPC_STREAM_PATH as RPC_STREAM_PATH,
    SSE_DROPPED as SSE_DROPPED,
    SSE_OUTPUT as SSE_OUTPUT,
    SSE_RESULT as SSE_RESULT,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params
from contracts.rpc.pass_through import PassThrough

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]

_DAEMON = (
    NotFound,
    Forbidden,
    InvalidParams,
    MachineStopped,
    DaemonUnavailable,
    DaemonTimeout,
    ToolError,
)


class MachineExecStreamParams(ExecCommandParams, kw_only=True):
    machine_id: _MachineId


class DaemonLogRequest(Params, kw_only=True):
    machine_id: _MachineId
    lines: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200


MACHINES_EXEC_STREAM = MethodSpec(
    _EXEC_STREAM,
    MachineExecStreamParams,
    ExecCommandResult,
    f"Run argv on a machine; POSTed to {RPC_STREAM_PATH}, its output streams as it is produced.",
    _DAEMON,
    scope="machines:exec",
    budget="exec",
    hand_written=True,
    streams=True,
)
MACHINES_DAEMON_LOG = MethodSpec(
    "machines.daemonLog",
    DaemonLogRequest,
    DaemonLogResult,
    "The last lines of the machine's daemon log.",
    (*_DAEMON, NotSupported),
    scope="machines:read",
    reads=True,
    client=ClientMethod("daemon_log", "machine_id lines", unwrap="lines"),
    passes=PassThrough(DAEMON_LOG, look=True),
)

LIVE_METHODS: tuple[AnySpec, ...] = (MACHINES_EXEC_STREAM, MACHINES_DAEMON_LOG)
