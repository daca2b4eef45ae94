"""The gateway's ``HostControl`` in memory: the provisioner's own host methods called directly,
without the NATS hop (the real hop: tests/integration/test_hosts.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from contracts import gateway_env_builds as geb, host_rpc as h
from contracts.daemon_rpc import ExecCommandResult
from contracts.events import HomeCopy
from contracts.jsonrpc import MethodSpec, P, R
from contracts.models import Machine
from services.provisioner.host_rpc_server import HostMethods


class InProcessHosts:
    def __init__(self, methods: HostMethods) -> None:
        self.methods = methods

    async def restart(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        return (await self.methods.restart_daemon(params, None)).restarted

    async def install_code(self, machine: Machine, target_ref: str) -> str:
        params = h.InstallCodeParams(machine_id=machine.id, target_ref=target_ref)
        return (await self.methods.install_code(params, None)).message

    async def environments(self, host: str | None, spec: MethodSpec[P, R], params: P) -> R:
        handlers: dict[str, Callable[[Any, None], Awaitable[Any]]] = {
            geb.HOST_LIST_ENVIRONMENTS.name: self.methods.builds.list,
            geb.HOST_BUILD_ENVIRONMENT.name: self.methods.builds.build,
            geb.HOST_DELETE_ENVIRONMENT.name: self.methods.builds.delete,
            geb.HOST_CHECK_ENVIRONMENT.name: self.methods.builds.check,
        }
        return cast(R, await handlers[spec.name](params, None))

    async def take_snapshot(self, machine: Machine, snapshot_id: str) -> HomeCopy:
        params = h.SnapshotParams(machine_id=machine.id, snapshot_id=snapshot_id)
        return (await self.methods.take_snapshot(params, None)).copied

    async def drop_snapshot(self, machine: Machine, snapshot_id: str) -> bool:
        params = h.SnapshotParams(machine_id=machine.id, snapshot_id=snapshot_id)
        return (await self.methods.drop_snapshot(params, None)).dropped

    async def take_memory_image(
        self, machine: Machine, image_id: str, forks: int | None
    ) -> h.MemoryImageTaken:
        params = h.MemoryImageParams(machine_id=machine.id, snapshot_id=image_id, forks=forks)
        return await self.methods.take_memory_image(params, None)

    async def exec_as_root(self, machine: Machine, params: h.RootExecParams) -> ExecCommandResult:
        return await self.methods.exec_as_root(params, None)

    async def apply_egress(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        return (await self.methods.apply_egress(params, None)).applied
