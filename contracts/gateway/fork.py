"""Forking and snapshotting machines (gateway_rpc.py is full): ``machines.fork``,
``machines.snapshot``, ``snapshots.list`` and ``snapshots.delete``.

A fork is a new machine of the source's instance whose home is the source's as of one instant
(a file the source was writing then is whole or absent, never torn); the source keeps running.
Each fork goes through the pipeline as a created machine does (setup push, probe); its
``provisioned`` event says how its home was copied (``cow`` or ``copy``) and how long the source
was paused. Processes are not copied: the fork's daemon restarts its background processes, as
after a stop and start. With ``memory`` (gvisor machines), they are: the source is checkpointed
(its daemon lets NATS go first), restored at once, and each fork is restored from that image
with an identity and credentials of its own (docs/fork-snapshots.md).

A snapshot is the same copy, read-only, kept (with no expiry) until deleted; each machine made
from it has a copy of its own, so deleting it breaks none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from contracts.errors import (
    Conflict,
    Forbidden,
    NotFound,
    NotSupported,
    RunningMachinesLimit,
    SnapshotLimit,
)
from contracts.gateway.types import InstanceRef, MachineId, Name, SnapshotId
from contracts.models import Machine
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: How many forks one call makes.
MAX_FORKS = 20
ForkCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_FORKS)]


class ForkMachineParams(Params, kw_only=True):
    machine_id: MachineId
    #: How many forks (1 to 20); each counts against the instance's ``maxRunningMachines``.
    count: ForkCount = 1
    #: The forks' processes go on from the source's state (memory and processes), each on
    #: its own; the source is checkpointed and runs on. gvisor machines only (1601 otherwise).
    memory: bool = False


class ForkedMachines(Result, kw_only=True):
    machines: list[Machine]


MACHINES_FORK: MethodSpec[ForkMachineParams, ForkedMachines] = MethodSpec(
    "machines.fork",
    ForkMachineParams,
    ForkedMachines,
    "New machines of the same instance, each with the machine's home as of one instant "
    "(running or stopped; it keeps running), each made ready as a created one.",
    (NotFound, Forbidden, Conflict, NotSupported, RunningMachinesLimit),
    scope="machines:exec",
    budget="create",
    client=ClientMethod("fork_machine", "machine_id count", unwrap="machines"),
    tool="fork",
)


class SnapshotParams(Params, kw_only=True):
    machine_id: MachineId
    name: Name
    #: The machine's memory and processes too (gvisor machines only, 1601 otherwise): a
    #: machine made from it starts with them running. The machine runs on.
    memory: bool = False


class SnapshotRef(Params, kw_only=True):
    snapshot_id: SnapshotId


class Snapshot(Result, kw_only=True):
    """A named, read-only state of a machine's home; kept until deleted (no expiry)."""

    id: str
    name: str
    instance_id: str
    #: The machine it was taken of.
    machine_id: str
    created_at: datetime
    #: ``cow``: a read-only copy-on-write snapshot; ``copy``: a plain copy.
    how: Literal["cow", "copy"]
    #: How long the machine was paused (frozen) for it; 0 with ``cow``.
    pause_ms: float
    #: It holds the machine's memory and processes too (``machines.snapshot {memory: true}``).
    memory: bool = False


class SnapshotList(Result, kw_only=True):
    snapshots: list[Snapshot]


class SnapshotDeleted(Result, kw_only=True):
    deleted: bool


MACHINES_SNAPSHOT: MethodSpec[SnapshotParams, Snapshot] = MethodSpec(
    "machines.snapshot",
    SnapshotParams,
    Snapshot,
    "A named, read-only state of the machine's home (running or stopped), kept until deleted; "
    "machines.create with fromSnapshot starts a machine of the instance with it.",
    (NotFound, Forbidden, Conflict, NotSupported, SnapshotLimit),
    scope="machines:exec",
    budget="pause",
    client=ClientMethod("snapshot_machine", "machine_id name"),
)
SNAPSHOTS_LIST: MethodSpec[InstanceRef, SnapshotList] = MethodSpec(
    "snapshots.list",
    InstanceRef,
    SnapshotList,
    "An instance's snapshots.",
    (NotFound, Forbidden),
    scope="machines:read",
    client=ClientMethod("list_snapshots", "instance_id", unwrap="snapshots"),
)
SNAPSHOTS_DELETE: MethodSpec[SnapshotRef, SnapshotDeleted] = MethodSpec(
    "snapshots.delete",
    SnapshotRef,
    SnapshotDeleted,
    "Delete a snapshot; machines made from it keep their homes. Refused (Conflict, naming "
    "it) while a machine is being made from it: until that machine is ready, failed or "
    "archived.",
    (NotFound, Forbidden, Conflict),
    scope="machines:exec",
    client=ClientMethod("delete_snapshot", "snapshot_id", unwrap="deleted"),
)

FORK_METHODS: tuple[AnySpec, ...] = (
    MACHINES_FORK,
    MACHINES_SNAPSHOT,
    SNAPSHOTS_LIST,
    SNAPSHOTS_DELETE,
)
