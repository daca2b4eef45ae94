"""This host's methods (contracts/host/rpc.py) on ``host.<hostId>.rpc``: restart a machine's
daemon, install code for it, enforce its egress policy. Every provisioner replica of the host
subscribes in one queue group, so one answers; a machine of another host is refused (its
host serves it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base.reply_server import ReplyServer, Working
from contracts.bus import subjects
from contracts.daemon.rpc import ExecCommandResult
from contracts.errors import Conflict, NotFound, NotSupported, ProviderError
from contracts.host import rpc as h
from contracts.models import Machine
from contracts.rpc.jsonrpc import Dispatcher, Router, handles
from controlplane.security.crypto import SecretBox, renew_connect_secret
from controlplane.settings import Settings
from controlplane.store import Store, disk as store_disk
from environments.shared_builds import SharedBuilds
from providers.base import (
    DaemonWatch,
    MachineControl,
    MemoryForker,
    Provider,
    RootExecutor,
    SnapshotTaker,
    capability,
)
from services.provisioner.builds.environment_builds import EnvironmentBuilds
from services.provisioner.disk import DiskBudget
from services.provisioner.egress.enforcer import EgressEnforcer

log = structlog.get_logger(__name__)

#: The source's lock, held through its checkpoint, its home's copy and its restore.
_IMAGE_HELD_S = 600.0
T = TypeVar("T")


class HostMethods:
    """The handlers: plain calls into this host's providers."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        providers: Mapping[str, Provider],
        egress: EgressEnforcer | None = None,
        builds: EnvironmentBuilds | None = None,
        box: SecretBox | None = None,
        disk: DiskBudget | None = None,
    ) -> None:
        self.store = store
        #: The instance's disk budget each copy takes its place in (FLEET_INSTANCE_DISK_MB).
        self.disk = disk or DiskBudget(store, 0, _no_memory)
        self.host_id = settings.host_id
        self.providers = providers
        self.egress = egress or EgressEnforcer(store, providers, settings.nats_url)
        # With no engine no build is ever spawned: a holder no one closes leaves nothing.
        self.builds = builds or EnvironmentBuilds(store, settings, no_engine, SharedBuilds())
        #: Seals the credential a fork with memory's source is given (None: no such forks).
        self.box = box

    async def _own(self, machine_id: str) -> tuple[Machine, Provider]:
        machine = await self.store.get_machine(machine_id)
        if machine.host_id not in (None, self.host_id):
            # Routed here by mistake (a stale host id): acting would touch nothing of it.
            raise NotFound(f"machine {machine_id} runs on host {machine.host_id}, not here")
        provider = self.providers.get(machine.provider)
        if provider is None:
            raise NotSupported(f"provider {machine.provider!r} cannot act on a running machine")
        return machine, provider

    async def _capable(self, machine_id: str, kind: type[T], cannot: str) -> tuple[Machine, T]:
        """The machine (this host's) and what of its provider has the capability ``kind``."""
        machine, provider = await self._own(machine_id)
        return machine, self._of(machine, provider, kind, cannot)

    @staticmethod
    def _of(machine: Machine, provider: Provider, kind: type[T], cannot: str) -> T:
        """What of ``provider`` has ``kind``; NotSupported saying what it ``cannot``."""
        part = capability(provider, kind)
        if part is None:
            raise NotSupported(f"the {machine.provider} provider {cannot}")
        return part

    @handles(h.RESTART_DAEMON)
    async def restart_daemon(self, p: h.HostMachineParams, _: None) -> h.RestartResult:
        machine, control = await self._capable(
            p.machine_id, MachineControl, "cannot restart a machine's daemon"
        )
        restarted = await control.restart(machine.id)
        log.info("host.daemon_restart", machine_id=machine.id, restarted=restarted)
        return h.RestartResult(restarted=restarted)

    @handles(h.DAEMON_RUNS)
    async def daemon_runs(self, p: h.HostMachineParams, _: None) -> h.DaemonRunsResult:
        machine, watch = await self._capable(
            p.machine_id, DaemonWatch, "cannot tell whether a machine's daemon runs"
        )
        return h.DaemonRunsResult(runs=await watch.daemon_runs(machine.id))

    @handles(h.INSTALL_CODE)
    async def install_code(self, p: h.InstallCodeParams, _: None) -> h.InstallCodeResult:
        machine, control = await self._capable(
            p.machine_id, MachineControl, "cannot install code on a machine"
        )
        message = await control.install_code(machine.id, p.target_ref)
        log.info("host.code_installed", machine_id=machine.id, target_ref=p.target_ref)
        return h.InstallCodeResult(message=message)

    @handles(h.TAKE_SNAPSHOT)
    async def take_snapshot(self, p: h.SnapshotParams, _: None) -> h.SnapshotTaken:
        machine, provider = await self._own(p.machine_id)
        shelf = self._of(machine, provider, SnapshotTaker, "keeps no snapshots")
        need = await self.disk.measured(provider, machine.instance_id, machine.id, machine=True)
        field = store_disk.image(p.snapshot_id)
        async with self.disk.held(machine.instance_id, field, need, f"snapshot {p.snapshot_id}"):
            copied = await shelf.take_snapshot(machine.id, p.snapshot_id)
        await self.disk.took(provider, machine.instance_id, field, p.snapshot_id)
        log.info("host.snapshot_taken", machine_id=machine.id, snapshot_id=p.snapshot_id,
                 how=copied.how, pause_ms=copied.pause_ms)  # fmt: skip
        return h.SnapshotTaken(copied=copied)

    @handles(h.DROP_SNAPSHOT)
    async def drop_snapshot(self, p: h.SnapshotParams, _: None) -> h.SnapshotDropped:
        machine, shelf = await self._capable(p.machine_id, SnapshotTaker, "keeps no snapshots")
        dropped = await shelf.drop_snapshot(p.snapshot_id)
        await self.store.disk.forget(machine.instance_id, store_disk.image(p.snapshot_id))
        log.info("host.snapshot_dropped", snapshot_id=p.snapshot_id, dropped=dropped)
        return h.SnapshotDropped(dropped=dropped)

    @handles(h.TAKE_MEMORY_IMAGE)
    async def take_memory_image(self, p: h.MemoryImageParams, _: None) -> h.MemoryImageTaken:
        machine, provider = await self._own(p.machine_id)
        forker = capability(provider, MemoryForker)
        if forker is None or self.box is None:
            raise NotSupported(f"the {machine.provider} provider cannot fork with memory here",
                               data={"runtime": machine.runtime})  # fmt: skip
        box = self.box

        async def renew() -> str:
            """Its NATS password renewed: the copy of the old one in the image is refused."""
            sealed = await self.store.machine_secret(machine.id)
            if sealed is None:
                raise ProviderError(f"machine {machine.id} has no credential")
            credential = renew_connect_secret(box.decrypt(sealed))
            await self.store.replace_machine_secret(machine.id, box.encrypt(credential))
            return credential

        field = store_disk.image(p.snapshot_id)
        async with self.store.locks.hold(f"provision:{machine.id}", ttl_s=_IMAGE_HELD_S) as held:
            if not held:
                raise Conflict(f"machine {machine.id} is being started, stopped or paused")
            need = await self.disk.measured(provider, machine.instance_id, machine.id, True)
            need += await self.disk.memory_bytes(machine)
            async with self.disk.held(machine.instance_id, field, need,
                                      f"the memory image {p.snapshot_id}"):  # fmt: skip
                size, stood_ms, copied = await forker.take_memory_image(
                    machine.id, p.snapshot_id, p.forks, renew
                )
            await self.egress.enforce(machine, at_start=True)  # its namespace is a new one
        await self.disk.took(provider, machine.instance_id, field, p.snapshot_id)
        log.info("host.memory_image_taken", machine_id=machine.id, image_id=p.snapshot_id,
                 bytes=size, stood_ms=round(stood_ms))  # fmt: skip
        return h.MemoryImageTaken(bytes=size, pause_ms=round(stood_ms, 1), copied=copied)

    @handles(h.APPLY_EGRESS)
    async def apply_egress(self, p: h.HostMachineParams, _: None) -> h.ApplyEgressResult:
        machine, _provider = await self._own(p.machine_id)
        return h.ApplyEgressResult(applied=await self.egress.enforce(machine))

    @handles(h.EXEC_AS_ROOT)
    async def exec_as_root(self, p: h.RootExecParams, _: None) -> ExecCommandResult:
        machine, provider = await self._own(p.machine_id)
        root = capability(provider, RootExecutor)
        if machine.runtime != "gvisor" or root is None:
            raise NotSupported(
                f"machine {machine.id} runs the {machine.runtime} runtime on the "
                f"{machine.provider} provider: nothing runs as root in it",
                data={"runtime": machine.runtime, "user": "root"},
            )
        log.info("host.exec_as_root", machine_id=machine.id, program=p.command[0])
        return await root.exec_as_root(machine.id, p)

    def dispatcher(self) -> Dispatcher[None]:
        router: Router[None] = Router()
        router.collect(self, self.builds)
        return Dispatcher(h.HOST_METHODS, router)


def no_engine() -> Any:
    raise NotSupported("this host has no Docker engine configured")


def host_rpc_server(nc: NATS, methods: HostMethods) -> ReplyServer:
    """Serves ``methods`` on this host's subject while entered; each request in a task of its
    own (an image build behind installCode must not hold up a restart). A stop answers what
    was asked before it, however long that takes."""
    dispatcher = methods.dispatcher()

    async def handle(msg: Msg) -> bytes | None:
        return await dispatcher.handle(msg.data, None)

    # Its asker knows a replica that ends while it works (a take of minutes) at once.
    working = Working(h.WORKING_EVERY_S, h.WORKING_HEADER, h.WORKING_ASK_HEADER)
    return ReplyServer(nc, subjects.host_rpc(methods.host_id), handle,
                       queue=subjects.HOST_RPC_QUEUE, failed_event="host.rpc_failed",
                       working=working)  # fmt: skip


async def _no_memory(_: Machine) -> int:
    """No limit is counted for a memory image's memory where none is known."""
    return 0
