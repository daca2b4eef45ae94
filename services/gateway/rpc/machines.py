"""Gateway methods that reach into running machines: env refresh, code refresh, restart, ports,
cron tables, SSH keys. Split from api.py, which keeps the records (instances, machines); the
methods that are one daemon call (background processes, files, the daemon's log) pass through
(``MethodSpec.passes``, ``services/gateway/rpc/daemon_calls.py``)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import structlog

from contracts.daemon import rpc as d
from contracts.daemon.machine_files import CronTable
from contracts.errors import Conflict, DaemonUnavailable, NotSupported
from contracts.gateway.machines import MACHINES_RESTART, RestartParams
from contracts.gateway.rpc import (
    CRON_LIST,
    CRON_SET,
    MACHINES_REFRESH_CODE,
    MACHINES_REFRESH_ENV,
    CronList,
    CronSetResult,
    InstanceRef,
    MachineRef,
    RefreshCodeResult,
    RefreshEnvParams,
    RefreshEnvResult,
    RefreshFailure,
    SetCronParams,
)
from contracts.gateway.ssh import (
    AUTHORIZED_KEYS,
    INSTANCES_SET_SSH_KEYS,
    SetSshKeysParams,
    SshKeysResult,
    authorized_keys,
)
from contracts.host import rpc as h
from contracts.models import Machine
from contracts.ports import LIST_PORTS, MACHINES_PORTS, MachinePortsParams, PortList
from contracts.rpc.jsonrpc import NoParams, handles
from contracts.status import REFRESHABLE
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.machines.machine_config import (
    fan_out,
    load_instance_configs,
    push_config,
    push_cron,
)
from controlplane.settings import Settings
from controlplane.store import Store
from environments.forward_ports import with_declared
from environments.hook import machine_config
from environments.lifecycle_commands import MachineLifecycle
from services.gateway.auth import Access, Caller, default_instance
from services.gateway.rpc.daemon_calls import DaemonCalls
from services.gateway.rpc.host_control import HostCalls

log = structlog.get_logger(__name__)


class MachineOps:
    def __init__(
        self,
        *,
        store: Store,
        daemons: DaemonClient,
        settings: Settings,
        hosts: HostCalls,
        platform_sha: str | None,
        access: Access,
        calls: DaemonCalls,
        keys: MachineKeys | None = None,
    ) -> None:
        self.keys = keys
        self.calls = calls
        self.store = store
        self.daemons = daemons
        self.settings = settings
        self.hosts = hosts
        self.platform_sha = platform_sha
        self.access = access

    # --- env ---------------------------------------------------------------------------------
    @handles(MACHINES_REFRESH_ENV)
    async def machines_refresh_env(self, p: RefreshEnvParams, c: Caller) -> RefreshEnvResult:
        if p.instance_id is not None:
            c.require(p.instance_id)
            await self.store.get_instance(p.instance_id)
        elif not c.admin:
            p = RefreshEnvParams(instance_id=default_instance(c))
        machines = await self._running(p.instance_id)
        iids = {m.instance_id for m in machines}
        configs = await load_instance_configs(self.store, self.settings, iids)

        async def push(m: Machine) -> None:
            # The devcontainer's variables stay in it, under the instance's.
            cfg = await machine_config(self.store, configs[m.instance_id], m)
            await push_config(self.daemons.machine(m.id), cfg, self.settings, cron=False)

        failed = await self._fan_out(machines, push)
        log.info("env.refreshed", instance_id=p.instance_id, machines=len(machines),
                 failed=len(failed))  # fmt: skip
        return RefreshEnvResult(
            machines=len(machines), written=len(machines) - len(failed), failed=failed
        )

    async def _running(self, instance_id: str | None) -> list[Machine]:
        machines = await self.store.list_machines(instance_id)
        return [m for m in machines if m.status in REFRESHABLE]

    async def _fan_out(
        self, machines: list[Machine], push: Callable[[Machine], Awaitable[None]]
    ) -> list[RefreshFailure]:
        """``push`` to every machine, REFRESH_CONCURRENCY at a time; a machine that fails is
        reported, never fatal to the others."""
        if self.keys is not None:  # one Redis round trip for every machine's key
            await self.keys.warm([m.id for m in machines])
        return await fan_out(machines, push)

    # --- code --------------------------------------------------------------------------------
    @handles(MACHINES_REFRESH_CODE)
    async def machines_refresh_code(self, p: MachineRef, c: Caller) -> RefreshCodeResult:
        machine = await self._running_one(c, p.machine_id, "code can be refreshed")
        if not self.platform_sha:
            raise NotSupported("the platform does not know its own git SHA: set FLEET_GIT_SHA "
                               "or run it from a git checkout")  # fmt: skip
        # On the machine's own host: its home (local), its volume (docker).
        install = h.InstallCodeParams(machine_id=machine.id, target_ref=self.platform_sha)
        installed = await self.hosts(h.INSTALL_CODE, install, machine=machine)
        params = d.SelfUpdateParams(target_ref=self.platform_sha)
        answer = await self.daemons.call(machine.id, d.SELF_UPDATE, params)
        log.info("code.refreshed", machine_id=machine.id, to=answer.to_git_sha,
                 restarting=answer.restarting)  # fmt: skip
        return RefreshCodeResult(
            machine_id=machine.id,
            message=installed.message,
            restarting=answer.restarting,
            from_git_sha=answer.from_git_sha,
            to_git_sha=answer.to_git_sha,
        )

    @handles(MACHINES_RESTART)
    async def machines_restart(self, p: RestartParams, c: Caller) -> Machine:
        machine = await self._running_one(c, p.machine_id, "daemon can be restarted")
        ref = h.HostMachineParams(machine_id=machine.id)
        if not (await self.hosts(h.RESTART_DAEMON, ref, machine=machine)).restarted:
            raise DaemonUnavailable(f"machine {machine.id} is not running on its provider "
                                    f"({machine.provider})")  # fmt: skip
        log.info("machine.restart_requested", machine_id=machine.id, provider=machine.provider)
        return machine

    # --- ports -------------------------------------------------------------------------------
    @handles(MACHINES_PORTS)
    async def machines_ports(self, p: MachinePortsParams, c: Caller) -> PortList:
        listed = await self.calls(c, p.machine_id, LIST_PORTS, NoParams(), look=True)
        # a devcontainer's ports, if any
        life = await self.store.lifecycles.load(p.machine_id, MachineLifecycle)
        return listed if life is None else with_declared(listed, life.devcontainer)

    async def _running_one(self, c: Caller, machine_id: str, what: str) -> Machine:
        """The caller's machine, if it is running: else ``Conflict`` (only a running
        machine's ``what``)."""
        machine = await self.access.live_machine(c, machine_id)
        if machine.status not in REFRESHABLE:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a running machine's {what}",
                data={"status": machine.status.value},
            )
        return machine

    # --- cron --------------------------------------------------------------------------------
    @handles(CRON_SET)
    async def cron_set(self, p: SetCronParams, c: Caller) -> CronSetResult:
        """Store the table and push it to the instance's running machines right away (new
        machines get it at setup)."""
        table = CronTable(jobs=p.jobs)

        async def push(m: Machine) -> None:
            await push_cron(self.daemons.machine(m.id), table)

        store = functools.partial(self.store.set_cron, p.instance_id, p.jobs)
        machines, failed = await self._store_and_push(c, p.instance_id, store, push)
        return CronSetResult(jobs=p.jobs, machines=machines, failed=failed)

    # --- SSH keys ----------------------------------------------------------------------------
    @handles(INSTANCES_SET_SSH_KEYS)
    async def instances_set_ssh_keys(self, p: SetSshKeysParams, c: Caller) -> SshKeysResult:
        """Store the keys and write them to the instance's running machines right away (new
        machines get them at setup)."""
        content = authorized_keys(p.keys)

        async def push(m: Machine) -> None:
            await self.daemons.machine(m.id).write_file(AUTHORIZED_KEYS, content, 0o600)

        store = functools.partial(self.store.set_ssh_keys, p.instance_id, p.keys)
        machines, failed = await self._store_and_push(c, p.instance_id, store, push)
        log.info("ssh_keys.set", instance_id=p.instance_id, keys=len(p.keys), machines=machines,
                 failed=len(failed))  # fmt: skip
        return SshKeysResult(keys=p.keys, machines=machines, failed=failed)

    async def _store_and_push(
        self, c: Caller, instance_id: str, store: Callable[[], Awaitable[None]],
        push: Callable[[Machine], Awaitable[None]],
    ) -> tuple[int, list[RefreshFailure]]:  # fmt: skip
        """An instance's setting stored (``store``, once the instance is found), then ``push``ed
        to its running machines at once (new machines get it at setup): how many, which failed."""
        c.require(instance_id)
        await self.store.get_instance(instance_id)
        await store()
        machines = await self._running(instance_id)
        return len(machines), await self._fan_out(machines, push)

    @handles(CRON_LIST)
    async def cron_list(self, p: InstanceRef, c: Caller) -> CronList:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)
        return CronList(jobs=await self.store.get_cron(p.instance_id))
