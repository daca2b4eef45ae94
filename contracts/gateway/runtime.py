"""A machine's runtime (docs/runtimes.md): ``instances.setRuntime`` and
``instances.getRuntime``; ``machines.create {runtime}`` and ``machines.exec {user}`` are in
gateway_types.py.

The runtime of a new machine is the one ``machines.create`` names, else its instance's, else
the platform's (``FLEET_RUNTIME``). A runtime the machine's provider cannot run (``gvisor`` on a
host without ``runsc``, or on the ``docker`` provider) is refused with ``NotSupported`` naming
it: never run as another.
"""

from __future__ import annotations

from contracts.errors import Forbidden, NotFound, NotSupported
from contracts.gateway.types import InstanceId, InstanceRef
from contracts.models import Runtime
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result


class SetRuntimeParams(Params, kw_only=True):
    instance_id: InstanceId
    #: The runtime of the instance's next machines; null: the platform's (FLEET_RUNTIME).
    runtime: Runtime | None


class InstanceRuntime(Result, kw_only=True):
    instance_id: str
    #: The instance's own setting; None: it has none.
    runtime: Runtime | None
    #: What its next machine runs: its own setting, else the platform's.
    effective: Runtime


INSTANCES_SET_RUNTIME = MethodSpec(
    "instances.setRuntime",
    SetRuntimeParams,
    InstanceRuntime,
    "Set the runtime of the instance's next machines (namespaces or gvisor; null: the "
    "platform's). Machines it has keep theirs. NotSupported if the platform's provider cannot "
    "run it.",
    (NotFound, Forbidden, NotSupported),
    scope="machines:exec",
    client=ClientMethod("set_runtime", "instance_id runtime"),
)
INSTANCES_GET_RUNTIME = MethodSpec(
    "instances.getRuntime",
    InstanceRef,
    InstanceRuntime,
    "The instance's runtime setting, and the runtime its next machine gets.",
    (NotFound, Forbidden),
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_runtime", "instance_id"),
)

RUNTIME_METHODS: tuple[AnySpec, ...] = (INSTANCES_SET_RUNTIME, INSTANCES_GET_RUNTIME)
