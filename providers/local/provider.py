"""Machine providers: how a machine is started and stopped.

``local`` runs ``fleet-daemon`` on this host under its supervisor (``daemon.supervise``: a
daemon that dies is started again), in a bubblewrap sandbox (``providers/sandbox/bwrap.py``) unless
the operator turned that off, with its own home ``<data-dir>/machines/<machineId>/home``. The
machine's root process (bwrap, or the supervisor without a sandbox) is recorded in
``daemon.pid``; it outlives a provisioner restart (as a cloud machine would). Its host pid is
the machine's external id (``local:<pid>``): the daemon runs under it, so the id stays true
across daemon restarts and handovers to newer code, which change only the daemon's own pid.
``stop_all_local`` is what ``fleet up`` calls on shutdown.

``LocalProvider`` is the local provider's one front: a machine's start, stop and removal. Its
parts, made in its constructor and handed what they share (``LocalHost``): ``Namespaces``
(bubblewrap machines), ``GvisorMachines`` (gVisor's), ``HomeCopies`` (forks' and snapshots'
homes), ``LocalRunning`` (what it answers about a running machine of either kind) and
``Children`` (the roots this process started, reaped); its ``capabilities`` say which part has
each capability of ``providers.base`` (pause is ``GvisorMachines``', snapshots
``HomeCopies``'). The processes' lookup and supervision are functions
(providers/local/processes.py, supervision.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import structlog

from base.version import SOURCE_ROOT
from contracts.errors import NotSupported
from controlplane.policy import Limits, PlacementOf
from providers import gvisor
from providers.base import (
    Capabilities,
    DaemonWatch,
    DiskMeter,
    HomeCloner,
    InterfaceEgress,
    MachineControl,
    MemoryForker,
    NetnsHolder,
    PastaOwned,
    Pauser,
    RootExecutor,
    SnapshotTaker,
    UsageMeter,
)
from providers.disk_walk import WalkBound
from providers.gvisor import remove_root
from providers.local.gvisor_machines import GvisorMachines
from providers.local.home_copies import HomeCopies, remove_files
from providers.local.host import LocalHost
from providers.local.namespaces import Namespaces
from providers.local.running import LocalRunning
from providers.local.supervision import Children, stop_local
from providers.sandbox import remove_overlay, unmount_overlay

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LocalParts:
    """The local provider's parts: what they share (``host``), the roots this process started
    (``children``), homes' copies, the two kinds of machines, and what it answers about a
    running machine of either kind (``running``)."""

    host: LocalHost
    children: Children
    copies: HomeCopies
    namespaces: Namespaces
    gvisor: GvisorMachines
    running: LocalRunning


class LocalProvider:
    name = "local"

    def __init__(
        self,
        *,
        data_dir: Path,
        nats_url: str,
        environ: Mapping[str, str],
        code_repo: Path | None = None,
        sandbox: bool = True,
        shared: tuple[Path, ...] = (),
        placement: PlacementOf | None = None,
        uids: tuple[int, int] | None = None,
        default_limits: Limits | None = None,
        own_network: bool = True,
        forwarded: tuple[int, ...] = (),
        cow: bool = False,
        engine: Callable[[], aiodocker.Docker] | None = None,
        runsc: gvisor.Runsc | None = None,
        netns_ready: gvisor.NetnsReady | None = None,
        disk_walk: WalkBound | None = None,
    ) -> None:
        """``runsc``: what runs gvisor machines (providers/gvisor/runsc.py; None: none here);
        ``netns_ready`` writes a machine's egress policy into the namespace a gvisor restore
        is about to run in (services/provisioner/egress/enforcer.py ``netns_policy``): never
        after it;
        ``disk_walk``: how much of a home a measurement of its disk may walk."""
        host = LocalHost.of(
            data_dir=data_dir, nats_url=nats_url, environ=environ,
            code_repo=code_repo or SOURCE_ROOT, sandbox=sandbox, shared=shared,
            placement=placement, uids=uids, default_limits=default_limits,
            own_network=own_network, forwarded=forwarded, cow=cow, engine=engine,
            disk_walk=disk_walk or WalkBound(),
        )  # fmt: skip
        children, copies = Children(host.machines), HomeCopies(host)
        machines = GvisorMachines(host, copies, runsc, netns_ready)
        running = LocalRunning(host, machines)
        #: Its parts, each made once (the warm pools take what they need of them).
        self.parts = LocalParts(
            host=host, children=children, copies=copies,
            namespaces=Namespaces(host, children), gvisor=machines, running=running,
        )  # fmt: skip
        #: Which part has each capability: callers ask ``providers.base.capability``.
        self.capabilities = Capabilities({
            HomeCloner: copies, SnapshotTaker: copies, DiskMeter: copies,
            Pauser: machines, MemoryForker: machines, RootExecutor: machines,
            MachineControl: running, DaemonWatch: running, NetnsHolder: running,
            InterfaceEgress: running, PastaOwned: running, UsageMeter: running,
        })  # fmt: skip

    @property
    def runs_images(self) -> bool:
        """An environment's image runs in the sandbox, in place of the host's system."""
        return self.parts.host.sandbox and self.parts.host.engine is not None

    @property
    def data_dir(self) -> Path:
        return self.parts.host.data_dir

    def machine_dir(self, machine_id: str) -> Path:
        return self.parts.host.machine_dir(machine_id)

    def home(self, machine_id: str) -> Path:
        return self.parts.host.home(machine_id)

    async def start(self, machine_id: str, token: str) -> str:
        self.parts.children.reap()
        place = await self.parts.host.place(machine_id)
        if place is not None and place.runtime == "gvisor":
            if place.egress_names:  # refused before anything of it runs unfiltered
                raise NotSupported(
                    f"{machine_id} runs the gvisor runtime, on which egress policy by name is "
                    f"not enforced, and its instance's names {place.egress_names[:3]} "
                    "(docs/limitations.md)",
                    data={"runtime": "gvisor"},
                )
            return await self.parts.gvisor.start(machine_id, token)
        return await self.parts.namespaces.start(machine_id, token)

    async def remove(self, machine_id: str) -> None:
        """Ends every process of the machine, then deletes its files (home, code store, writes
        outside the home);
        its daemon log and exit records, the platform's own, stay beside them."""
        machine_dir = self.machine_dir(machine_id)
        if gvisor.is_gvisor(machine_dir):
            await self.parts.gvisor.stop(machine_id)
        await asyncio.to_thread(stop_local, machine_dir, machine_id)
        self.parts.children.reap()
        await asyncio.to_thread(remove_overlay, machine_dir)  # its writes outside the home
        await asyncio.to_thread(remove_root, machine_dir)  # a gvisor machine's of an image
        await asyncio.to_thread(remove_files, machine_dir)
        log.info("provider.local_removed", machine_id=machine_id)

    async def stop(self, machine_id: str) -> bool:
        """As ``stop``: the home (and the machine's uid) stay in its directory, and a stop
        never removes them here; ``start`` runs the same machine in them again."""
        if gvisor.is_gvisor(self.machine_dir(machine_id)):
            return await self.parts.gvisor.stop(machine_id)
        was_up = await asyncio.to_thread(stop_local, self.machine_dir(machine_id), machine_id)
        self.parts.children.reap()
        await asyncio.to_thread(unmount_overlay, self.machine_dir(machine_id))
        return was_up
