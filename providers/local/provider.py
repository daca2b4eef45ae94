"""Machine providers: how a machine is started and stopped.

``local`` runs ``fleet-daemon`` on this host under its supervisor (``daemon.supervise``: a
daemon that dies is started again), in a bubblewrap sandbox (``providers/sandbox/bwrap.py``) unless
the operator turned that off, with its own home ``<data-dir>/machines/<machineId>/home``. The
machine's root process (bwrap, or the supervisor without a sandbox) is recorded in
``daemon.pid``; it outlives a provisioner restart (as a cloud machine would). Its host pid is
the machine's external id (``local:<pid>``): the daemon runs under it, so the id stays true
across daemon restarts and handovers to newer code, which change only the daemon's own pid.
``stop_all_local`` is what ``fleet up`` calls on shutdown.

``LocalProvider`` is the local provider's one front; its parts, made in its constructor and
handed what they share (``LocalHost``): ``Namespaces`` (bubblewrap machines),
``GvisorMachines`` (gVisor's), ``HomeCopies`` (forks' and snapshots' homes) and ``Children``
(the roots this process started, reaped); the processes' lookup and supervision are functions
(providers/local/processes.py, supervision.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import structlog

from base.codestore import CODE_MOUNT
from base.version import SOURCE_ROOT
from contracts.bus.events import HomeCopy
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import NotSupported
from controlplane.policy import Limits, PlacementOf
from providers import gvisor
from providers.code import install_code
from providers.disk_walk import WalkBound, home_disk
from providers.gvisor import remove_root
from providers.local.gvisor_machines import GvisorMachines
from providers.local.home_copies import HomeCopies, remove_files
from providers.local.host import LocalHost
from providers.local.namespaces import Namespaces
from providers.local.processes import code_store, first_process, owners, running_pid
from providers.local.supervision import Children, restart_local, stop_local
from providers.machine_usage import Usage, local_usage
from providers.sandbox import (
    MachineCgroup,
    remove_overlay,
    sandbox_root_children,
    unmount_overlay,
)

log = structlog.get_logger(__name__)

#: Threads reading machines' counters (``LocalProvider.usage``).
_READS = 4


@dataclass(frozen=True)
class LocalParts:
    """The local provider's parts: what they share (``host``), the roots this process started
    (``children``), homes' copies, and the two kinds of machines."""

    host: LocalHost
    children: Children
    copies: HomeCopies
    namespaces: Namespaces
    gvisor: GvisorMachines


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
        #: Its parts, each made once (the warm pools take what they need of them).
        self.parts = LocalParts(
            host=host, children=children, copies=copies,
            namespaces=Namespaces(host, children),
            gvisor=GvisorMachines(host, copies, runsc, netns_ready),
        )  # fmt: skip
        #: Machines' counters are read here, never on the default executor, which starts
        #: machines (a runsc asked for a gvisor machine's memory may take seconds).
        self._reads = ThreadPoolExecutor(_READS, thread_name_prefix="local-usage")

    @property
    def sandbox(self) -> bool:
        """False only when the operator said so (fleet up --no-sandbox): not isolated."""
        return self.parts.host.sandbox

    @property
    def cow(self) -> bool:
        """Homes are btrfs subvolumes: a fork is a snapshot (providers/local/homes.py)."""
        return self.parts.host.cow

    @property
    def own_network(self) -> bool:
        """A sandboxed machine's network is its own (providers/sandbox/netns.py)."""
        return self.parts.host.own_network

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

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        """Install the commit in the machine's code store, beside its home (never in it): the
        sandbox has it read-only (``CODE_MOUNT``), and the platform's record says it is current."""
        store = code_store(self.machine_dir(machine_id))
        repo = self.parts.host.code_repo
        sha, new = await asyncio.to_thread(install_code, repo, target_ref, store)
        return f"{'installed' if new else 'already had'} code {sha[:12]} in {CODE_MOUNT}"

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

    # --- Copies of homes (providers/local/home_copies.py) and memory images.

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        return await self.parts.copies.take_snapshot(machine_id, snapshot_id)

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        return await self.parts.copies.drop_snapshot(snapshot_id)

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        return await self.parts.copies.clone_home(source_id, machine_id)

    async def disk_bytes(self, source_id: str) -> int:
        return await self.parts.copies.disk_bytes(source_id)

    async def take_memory_image(
        self, machine_id: str, image_id: str, forks: int | None,
        renew: Callable[[], Awaitable[str]],
    ) -> tuple[int, float, HomeCopy]:  # fmt: skip
        return await self.parts.gvisor.take_memory_image(machine_id, image_id, forks, renew)

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        """What the machine uses now (providers/machine_usage.py), its home's disk too when
        ``disk`` (providers/disk_walk.py: bounded, charged to the machine); None if nothing of
        it runs here."""
        loop = asyncio.get_running_loop()
        read = await loop.run_in_executor(self._reads, self._usage, machine_id)
        if read is None or not disk:
            return None if read is None else read[0]
        got, root = read
        use, size = await home_disk(self.home(machine_id), self.parts.host.disk_walk, root)
        return got.with_disk(None if use is None else use.bytes, size)

    def _usage(self, machine_id: str) -> tuple[Usage, int | None] | None:
        """The machine's counters, and its first process on this host (in its cgroups)."""
        mdir = self.machine_dir(machine_id)
        on_gvisor = gvisor.is_gvisor(mdir)
        root = first_process(mdir, machine_id)
        if on_gvisor or root is None or not self.own_network:
            pid = root if on_gvisor else None
        else:  # a process in its network namespace: bwrap's child
            pid = next(iter(sandbox_root_children(root)), None)
        got = local_usage([MachineCgroup(o) for o in owners(mdir, machine_id)], pid)
        if got is None:
            return None
        if on_gvisor and pid is not None:
            kernel = self.parts.gvisor.kernel_memory(mdir, machine_id, pid)
            got = dataclasses.replace(got, memory_bytes=kernel or got.memory_bytes)
        return got, root

    # --- A running machine: root in it, pause and resume (gvisor), its network, restart, stop.

    async def exec_as_root(self, machine_id: str, params: ExecCommandParams) -> ExecCommandResult:
        return await self.parts.gvisor.exec_as_root(machine_id, params)

    async def pause(self, machine_id: str) -> int:
        return await self.parts.gvisor.pause(machine_id)

    async def resume(self, machine_id: str) -> str:
        return await self.parts.gvisor.resume(machine_id)

    async def restart(self, machine_id: str) -> bool:
        """Restart the machine's daemon in place (its processes stay); False if not running."""
        if gvisor.is_gvisor(self.machine_dir(machine_id)):
            return await self.parts.gvisor.restart(machine_id)
        return await asyncio.to_thread(restart_local, self.machine_dir(machine_id), machine_id)

    async def daemon_runs(self, machine_id: str) -> bool:
        """Its sandbox runs (a gvisor machine's runsc sandbox, a bwrap machine's root)."""
        machine_dir = self.machine_dir(machine_id)
        if gvisor.is_gvisor(machine_dir):
            return await asyncio.to_thread(gvisor.sandbox_pid, machine_dir) is not None
        return await asyncio.to_thread(running_pid, machine_dir, machine_id) is not None

    async def netns_pid(self, machine_id: str) -> int | None:
        """The sandbox's init (bwrap's child), or a gvisor machine's sandbox, which holds the
        machine's network namespace."""
        if gvisor.is_gvisor(self.machine_dir(machine_id)):
            return await asyncio.to_thread(gvisor.sandbox_pid, self.machine_dir(machine_id))
        if not self.own_network:
            raise NotSupported(
                "this host's local machines share the host's network (FLEET_SANDBOX_NETWORK="
                "host or no sandbox): an egress policy cannot be enforced on them"
            )
        root = await asyncio.to_thread(running_pid, self.machine_dir(machine_id), machine_id)
        if root is None:
            return None
        children = sandbox_root_children(root)
        return children[0] if children else None

    def egress_on_interfaces(self, machine_id: str) -> bool:
        return gvisor.is_gvisor(self.machine_dir(machine_id))

    def pasta_owners(self, machine_id: str) -> list[str]:
        return owners(self.machine_dir(machine_id), machine_id)

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
