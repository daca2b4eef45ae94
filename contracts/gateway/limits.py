"""An instance's machine limits (gateway_rpc.py is full): ``instances.setLimits`` and
``instances.getLimits``.

A machine gets the platform's limits (``FLEET_MACHINE_MEMORY_MB``, ``_CPUS``, ``_PIDS``) unless
its instance set its own. Anyone who may act on the instance may lower them; raising one above
the platform's default takes the admin token; nobody goes past the platform's maxima
(``FLEET_MACHINE_MAX_*``). They apply to the instance's machines created (or rebuilt) from then
on: the container's HostConfig on ``docker``, the machine's cgroup on ``local``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.types import InstanceId, InstanceRef
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: Below these a machine's own supervisor and daemon cannot run.
MemoryMb = Annotated[int, msgspec.Meta(ge=128, le=1 << 22)]
Cpus = Annotated[float, msgspec.Meta(ge=0.05, le=1024)]
Pids = Annotated[int, msgspec.Meta(ge=32, le=1 << 22)]
#: How many of the instance's machines may run at once (stopped ones do not count).
MaxRunning = Annotated[int, msgspec.Meta(ge=0, le=1 << 16)]


class LimitsOverride(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """What an instance set (stored); None: the platform's default."""

    memory_mb: MemoryMb | None = None
    cpus: Cpus | None = None
    pids: Pids | None = None
    max_running_machines: MaxRunning | None = None


class SetLimitsParams(Params, kw_only=True):
    instance_id: InstanceId
    #: Each omitted (or null) limit goes back to the platform's default.
    memory_mb: MemoryMb | None = None
    cpus: Cpus | None = None
    pids: Pids | None = None
    #: A start or create past it is refused (RunningMachinesLimit); null: no limit. Only the
    #: admin may raise or remove one that is set.
    max_running_machines: MaxRunning | None = None


class InstanceLimits(Result, kw_only=True):
    """The limits the instance's next machine gets, and which of them are its own."""

    instance_id: str
    memory_mb: int
    cpus: float
    pids: int
    #: None: no limit.
    max_running_machines: int | None = None
    own: list[str]


INSTANCES_SET_LIMITS = MethodSpec(
    "instances.setLimits",
    SetLimitsParams,
    InstanceLimits,
    "Set the memory, CPU and pids limits of the instance's machines (omitted: the platform's "
    "default); raising one above the default needs the admin token.",
    (NotFound, Forbidden, InvalidParams),
    scope="admin",
    client=ClientMethod("set_limits", "instance_id"),
)
INSTANCES_GET_LIMITS = MethodSpec(
    "instances.getLimits",
    InstanceRef,
    InstanceLimits,
    "The limits the instance's machines get.",
    (NotFound, Forbidden),
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_limits", "instance_id"),
)

LIMITS_METHODS: tuple[AnySpec, ...] = (INSTANCES_SET_LIMITS, INSTANCES_GET_LIMITS)
