"""A machine's runtime (contracts/gateway/runtime.py): ``instances.setRuntime`` and
``instances.getRuntime``, the runtime a new machine gets, and the refusal of a runtime its
provider cannot run (``NotSupported`` naming it: never another runtime in its place)."""

from __future__ import annotations

import structlog

from contracts.errors import NotSupported
from contracts.gateway.runtime import (
    INSTANCES_GET_RUNTIME,
    INSTANCES_SET_RUNTIME,
    InstanceRuntime,
    SetRuntimeParams,
)
from contracts.gateway.types import InstanceRef, MachineExecParams
from contracts.host.rpc import RootExecParams
from contracts.models import Machine, Runtime, RuntimeChoice
from contracts.rpc.jsonrpc import handles
from controlplane.policy import runtime_choice, runtime_refusal
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Access, Caller

log = structlog.get_logger(__name__)


class RuntimeOps:
    def __init__(self, *, store: Store, settings: Settings, access: Access) -> None:
        self.store = store
        self.settings = settings
        self.access = access

    @handles(INSTANCES_SET_RUNTIME)
    async def instances_set_runtime(self, p: SetRuntimeParams, c: Caller) -> InstanceRuntime:
        await self.access.instance_exists(c, p.instance_id)
        if p.runtime is not None:
            self.check(self.settings.default_provider, p.runtime)
        await self.store.instance_settings.set_runtime(p.instance_id, p.runtime)
        log.info("instance.runtime_set", instance_id=p.instance_id, runtime=p.runtime,
                 by=c.token_id)  # fmt: skip
        return self._answer(p.instance_id, p.runtime)

    @handles(INSTANCES_GET_RUNTIME)
    async def instances_get_runtime(self, p: InstanceRef, c: Caller) -> InstanceRuntime:
        await self.access.instance_exists(c, p.instance_id)
        own = await self.store.instance_settings.runtime(p.instance_id)
        return self._answer(p.instance_id, own)

    def _answer(self, instance_id: str, own: Runtime | None) -> InstanceRuntime:
        return InstanceRuntime(
            instance_id=instance_id, runtime=own, effective=own or self.settings.runtime
        )

    async def for_new(
        self, instance_id: str, provider: str, asked: Runtime | None
    ) -> RuntimeChoice:
        """A new machine's runtime: ``asked``, else its instance's, else the platform's;
        NotSupported if ``provider`` cannot run it."""
        runtime = asked or await self.store.instance_settings.runtime(instance_id)
        runtime = runtime or self.settings.runtime
        self.check(provider, runtime)
        return runtime_choice(runtime, self.settings.gvisor_platform)

    def check(self, provider: str, runtime: Runtime) -> None:
        why = runtime_refusal(provider, runtime, self.settings.runsc)
        if why is not None:
            raise NotSupported(why, data={"runtime": runtime, "provider": provider})


def check_root(machine: Machine) -> None:
    """Root inside a machine is for ``gvisor`` machines only (root of gVisor's kernel, never the
    host's); NotSupported on any other."""
    if machine.runtime != "gvisor":
        raise NotSupported(
            f"machine {machine.id} runs the {machine.runtime} runtime, on the host's own kernel: "
            "it never runs anything as root (create a machine with runtime gvisor for root)",
            data={"runtime": machine.runtime, "user": "root"},
        )


def root_exec(p: MachineExecParams) -> RootExecParams:
    """``machines.exec {user: root}`` as its host's call."""
    return RootExecParams(machine_id=p.machine_id, command=p.command, timeout_s=p.timeout_s,
                          cwd=p.cwd, env=p.env)  # fmt: skip
