"""Forking machines (gateway_rpc.py is full): ``machines.fork``.

A fork is a new machine of the source's instance whose home is the source's as of one instant
(a file the source was writing then is whole or absent, never torn); the source keeps running.
Each fork goes through the pipeline as a created machine does (setup push, probe); its
``provisioned`` event says how its home was copied (``cow`` or ``copy``) and how long the source
was paused. Processes are not copied: the fork's daemon restarts its background processes, as
after a stop and start.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import Conflict, Forbidden, NotFound, RunningMachinesLimit
from contracts.gateway_types import MachineId
from contracts.jsonrpc import AnySpec, MethodSpec, Params, Result
from contracts.models import Machine

#: How many forks one call makes.
MAX_FORKS = 20
ForkCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_FORKS)]


class ForkMachineParams(Params, kw_only=True):
    machine_id: MachineId
    #: How many forks (1 to 20); each counts against the instance's ``maxRunningMachines``.
    count: ForkCount = 1


class ForkedMachines(Result, kw_only=True):
    machines: list[Machine]


MACHINES_FORK: MethodSpec[ForkMachineParams, ForkedMachines] = MethodSpec(
    "machines.fork",
    ForkMachineParams,
    ForkedMachines,
    "New machines of the same instance, each with the machine's home as of one instant "
    "(running or stopped; it keeps running), each made ready as a created one.",
    (NotFound, Forbidden, Conflict, RunningMachinesLimit),
)

FORK_METHODS: tuple[AnySpec, ...] = (MACHINES_FORK,)
