"""What only a machine's own host can do to it (restart its daemon, install code for it), asked
of that host's provisioners over NATS (contracts/host_rpc.py): the gateway holds no provider and
reaches no host's data dir or Docker engine itself."""

from __future__ import annotations

import itertools
from typing import Protocol

from nats.aio.client import Client as NATS

from contracts import gateway_env_builds as geb, host_rpc as h
from contracts.daemon_rpc import ExecCommandResult
from contracts.events import HomeCopy
from contracts.jsonrpc import MethodSpec, P, R
from contracts.models import Machine
from controlplane.host_call import call_host


class HostControl(Protocol):
    async def restart(self, machine: Machine) -> bool:
        """Restart the machine's daemon in place; False: not running on its host."""

    async def take_snapshot(self, machine: Machine, snapshot_id: str) -> HomeCopy:
        """A read-only copy of the machine's home, on its host; how it was copied."""

    async def drop_snapshot(self, machine: Machine, snapshot_id: str) -> bool:
        """Remove a snapshot taken of the machine; False if there was none."""

    async def take_memory_image(
        self, machine: Machine, image_id: str, forks: int | None
    ) -> h.MemoryImageTaken:
        """Checkpoint the (gvisor) machine and let it run on; its image kept for ``forks``
        (None: until deleted, a snapshot's)."""

    async def install_code(self, machine: Machine, target_ref: str) -> str:
        """Install code at ``target_ref`` for the machine's daemon; what was done."""

    async def apply_egress(self, machine: Machine) -> bool:
        """Enforce the machine's instance's egress policy now; False: not running."""

    async def exec_as_root(self, machine: Machine, params: h.RootExecParams) -> ExecCommandResult:
        """Run a command as root inside the (gvisor) machine, by its host's provider."""

    async def environments(self, host: str | None, spec: MethodSpec[P, R], params: P) -> R:
        """One of the environment builds' host methods (contracts/gateway_env_builds.py) on
        ``host`` (None: the default host)."""


class HostClient:
    """``HostControl`` over NATS: one request to ``host.<machine's hostId>.rpc``. A machine
    recorded before hosts were (no host id) is this deployment's default host's."""

    def __init__(
        self,
        nc: NATS,
        *,
        default_host_id: str,
        timeout_s: float,
        install_timeout_s: float,
        build_timeout_s: float = 3600.0,
    ) -> None:
        self._nc = nc
        self._default = default_host_id
        self._timeout_s = timeout_s
        self._install_timeout_s = install_timeout_s
        self._build_timeout_s = build_timeout_s
        self._ids = itertools.count(1)

    async def restart(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        timeout_s = self._timeout_s + h.RESTART_WAIT_S
        result = await self._call(machine, h.RESTART_DAEMON, params, timeout_s)
        return result.restarted

    async def install_code(self, machine: Machine, target_ref: str) -> str:
        params = h.InstallCodeParams(machine_id=machine.id, target_ref=target_ref)
        result = await self._call(machine, h.INSTALL_CODE, params, self._install_timeout_s)
        return result.message

    async def take_snapshot(self, machine: Machine, snapshot_id: str) -> HomeCopy:
        params = h.SnapshotParams(machine_id=machine.id, snapshot_id=snapshot_id)
        return (await self._call(machine, h.TAKE_SNAPSHOT, params, self._install_timeout_s)).copied

    async def take_memory_image(
        self, machine: Machine, image_id: str, forks: int | None
    ) -> h.MemoryImageTaken:
        params = h.MemoryImageParams(machine_id=machine.id, snapshot_id=image_id, forks=forks)
        return await self._call(machine, h.TAKE_MEMORY_IMAGE, params, self._install_timeout_s)

    async def drop_snapshot(self, machine: Machine, snapshot_id: str) -> bool:
        params = h.SnapshotParams(machine_id=machine.id, snapshot_id=snapshot_id)
        return (await self._call(machine, h.DROP_SNAPSHOT, params, self._timeout_s)).dropped

    async def apply_egress(self, machine: Machine) -> bool:
        params = h.HostMachineParams(machine_id=machine.id)
        return (await self._call(machine, h.APPLY_EGRESS, params, self._timeout_s)).applied

    async def exec_as_root(self, machine: Machine, params: h.RootExecParams) -> ExecCommandResult:
        # The command's own time, and the RPC's on top of it.
        timeout_s = params.timeout_s + self._timeout_s
        return await self._call(machine, h.EXEC_AS_ROOT, params, timeout_s)

    async def environments(self, host: str | None, spec: MethodSpec[P, R], params: P) -> R:
        # A build answers when done: its timeout is the build's, not an RPC's.
        timeout_s = self._build_timeout_s if spec is geb.HOST_BUILD_ENVIRONMENT else self._timeout_s
        return await self._call_host(host or self._default, spec, params, timeout_s, None)

    async def _call(
        self, machine: Machine, spec: MethodSpec[P, R], params: P, timeout_s: float
    ) -> R:
        host = machine.host_id or self._default
        return await self._call_host(host, spec, params, timeout_s, machine.id)

    async def _call_host(
        self, host: str, spec: MethodSpec[P, R], params: P, timeout_s: float, mid: str | None
    ) -> R:
        return await call_host(self._nc, host, spec, params, timeout_s,
                               request_id=next(self._ids), machine_id=mid)  # fmt: skip
