"""Gateway methods that act on a machine through its provider (gateway_rpc.py is full).

``machines.restart`` restarts the machine's daemon in place: the provider signals the machine's
supervisor (``local``) or restarts the daemon inside its container (``docker``); the machine's
background processes keep running and the new daemon re-adopts them. Not ``refreshCode``: the
code stays the same.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import (
    Conflict,
    DaemonUnavailable,
    Forbidden,
    MachineStopped,
    NotFound,
    NotSupported,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.models import Machine
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]


class RestartParams(Params, kw_only=True):
    machine_id: _MachineId


MACHINES_RESTART = MethodSpec(
    "machines.restart",
    RestartParams,
    Machine,
    "Restart a machine's daemon in place (its processes keep running).",
    (NotFound, Forbidden, Conflict, MachineStopped, DaemonUnavailable, NotSupported),
    scope="machines:exec",
    client=ClientMethod("restart_machine", "machine_id"),
)

MACHINE_METHODS: tuple[AnySpec, ...] = (MACHINES_RESTART,)
