"""Hosts: where machines run (docs/hosts.md). ``hosts.list`` (admin only) shows each host's
provisioner as it announced itself: its capacity, its machines, its last heartbeat, its state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from contracts.errors import Forbidden, NotFound
from contracts.gateway.types import RefreshFailure
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, NoParams, Params, Result
from contracts.status import HostState

#: The reason (status reason and ``machine.failed``'s) of a create no host took in time
#: (``FLEET_PLACEMENT_TIMEOUT_S``) while none had room.
NO_HOST_WITH_CAPACITY = "no host with capacity"
#: The stage ``machine.failed`` names for it.
PLACEMENT_STAGE = "placement"


class HostInfo(Result, kw_only=True):
    #: ``FLEET_HOST_ID`` of the host's provisioner (default: its host name).
    host_id: str
    #: How many running machines it takes (``FLEET_HOST_CAPACITY``); None: no limit.
    capacity: int | None = None
    #: Its machines that run, or are being started (any status but stopped or archived: a
    #: failed machine still runs there until it is archived).
    running: int
    #: Its stopped machines (their homes stay on the host).
    stopped: int
    last_heartbeat: datetime
    state: HostState
    #: Below its ``FLEET_HOST_MIN_AVAILABLE_MB`` at its last heartbeat: it takes no new
    #: machine until memory is free again.
    memory_low: bool = False


HostId = Annotated[str, msgspec.Meta(min_length=1, max_length=253, pattern=r"^\S+$")]


class DrainParams(Params, kw_only=True):
    host_id: HostId
    #: False: the host takes new machines again.
    draining: bool = True
    #: Also rebuild the host's running machines now (each instance's current one): their
    #: replacements are placed on other hosts. Only with ``draining``.
    rebuild: bool = False

    def __post_init__(self) -> None:
        if self.rebuild and not self.draining:
            raise ValueError("field `rebuild` moves machines off a drained host: it needs draining")


class Rebuilt(Result, kw_only=True):
    #: The machine that ran on the drained host (archived: "replaced by a rebuild").
    machine_id: str
    #: Its instance's new machine, placed on another host.
    replaced_by: str


class DrainResult(HostInfo, kw_only=True):
    """The host as ``hosts.list`` shows it after the drain, and what ``rebuild`` moved."""

    rebuilt: list[Rebuilt] = msgspec.field(default_factory=list)
    #: Machines a rebuild refused (a limit, a machine archived meanwhile), each with its error.
    not_rebuilt: list[RefreshFailure] = msgspec.field(default_factory=list)


class HostList(Result, kw_only=True):
    hosts: list[HostInfo]


HOSTS_LIST = MethodSpec(
    "hosts.list",
    NoParams,
    HostList,
    "Every host that announced itself (admin only): capacity, running and stopped machines, "
    "last heartbeat, state (lost: no heartbeat for FLEET_HOST_LOST_AFTER_S).",
    (Forbidden,),
    scope="admin",
    reads=True,
    client=ClientMethod("list_hosts", unwrap="hosts"),
)

HOSTS_DRAIN = MethodSpec(
    "hosts.drain",
    DrainParams,
    DrainResult,
    "Stop (or, with draining false, resume) new placements on a host (admin only): its "
    "provisioner takes no machine.created; its machines keep running, unless rebuild is set: "
    "then each is rebuilt now, onto other hosts.",
    (NotFound, Forbidden),
    scope="admin",
    client=ClientMethod("drain_host", "host_id"),
)

HOST_METHODS: tuple[AnySpec, ...] = (HOSTS_LIST, HOSTS_DRAIN)
