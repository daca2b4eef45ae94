"""``LocalRunning``: what the local provider answers about a running machine, whichever of its
two kinds it is (a bubblewrap machine or a gVisor one): its daemon restarted in place, whether
its daemon runs, its network namespace, its pasta's owners, its counters, the platform's code
put on it. The capabilities ``MachineControl``, ``DaemonWatch``, ``InterfaceEgress``,
``PastaOwned`` and ``UsageMeter`` of ``providers.base``."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from base.codestore import CODE_MOUNT
from contracts.errors import NotSupported
from providers import gvisor
from providers.code import install_code
from providers.disk_walk import home_disk
from providers.local.gvisor_machines import GvisorMachines
from providers.local.host import LocalHost
from providers.local.processes import code_store, first_process, owners, running_pid
from providers.local.supervision import restart_local
from providers.machine_usage import Usage, local_usage
from providers.sandbox import MachineCgroup, sandbox_root_children

#: Threads reading machines' counters (``LocalRunning.usage``).
_READS = 4


class LocalRunning:
    def __init__(self, host: LocalHost, gvisor_machines: GvisorMachines) -> None:
        self._host = host
        self._gvisor = gvisor_machines
        #: Machines' counters are read here, never on the default executor, which starts
        #: machines (a runsc asked for a gvisor machine's memory may take seconds).
        self._reads = ThreadPoolExecutor(_READS, thread_name_prefix="local-usage")

    def _dir(self, machine_id: str) -> Path:
        return self._host.machine_dir(machine_id)

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        """Install the commit in the machine's code store, beside its home (never in it): the
        sandbox has it read-only (``CODE_MOUNT``), and the platform's record says it is current."""
        store = code_store(self._dir(machine_id))
        sha, new = await asyncio.to_thread(install_code, self._host.code_repo, target_ref, store)
        return f"{'installed' if new else 'already had'} code {sha[:12]} in {CODE_MOUNT}"

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        """What the machine uses now (providers/machine_usage.py), its home's disk too when
        ``disk`` (providers/disk_walk.py: bounded, charged to the machine); None if nothing of
        it runs here."""
        loop = asyncio.get_running_loop()
        read = await loop.run_in_executor(self._reads, self._usage, machine_id)
        if read is None or not disk:
            return None if read is None else read[0]
        got, root = read
        home = self._host.home(machine_id)
        use, size = await home_disk(home, self._host.disk_walk, root)
        return got.with_disk(None if use is None else use.bytes, size)

    def _usage(self, machine_id: str) -> tuple[Usage, int | None] | None:
        """The machine's counters, and its first process on this host (in its cgroups)."""
        mdir = self._dir(machine_id)
        on_gvisor = gvisor.is_gvisor(mdir)
        root = first_process(mdir, machine_id)
        if on_gvisor or root is None or not self._host.own_network:
            pid = root if on_gvisor else None
        else:  # a process in its network namespace: bwrap's child
            pid = next(iter(sandbox_root_children(root)), None)
        got = local_usage([MachineCgroup(o) for o in owners(mdir, machine_id)], pid)
        if got is None:
            return None
        if on_gvisor and pid is not None:
            kernel = self._gvisor.kernel_memory(mdir, machine_id, pid)
            got = dataclasses.replace(got, memory_bytes=kernel or got.memory_bytes)
        return got, root

    async def restart(self, machine_id: str) -> bool:
        """Restart the machine's daemon in place (its processes stay); False if not running."""
        if gvisor.is_gvisor(self._dir(machine_id)):
            return await self._gvisor.restart(machine_id)
        return await asyncio.to_thread(restart_local, self._dir(machine_id), machine_id)

    async def daemon_runs(self, machine_id: str) -> bool:
        """Its sandbox runs (a gvisor machine's runsc sandbox, a bwrap machine's root)."""
        machine_dir = self._dir(machine_id)
        if gvisor.is_gvisor(machine_dir):
            return await asyncio.to_thread(gvisor.sandbox_pid, machine_dir) is not None
        return await asyncio.to_thread(running_pid, machine_dir, machine_id) is not None

    async def netns_pid(self, machine_id: str) -> int | None:
        """The sandbox's init (bwrap's child), or a gvisor machine's sandbox, which holds the
        machine's network namespace."""
        machine_dir = self._dir(machine_id)
        if gvisor.is_gvisor(machine_dir):
            return await asyncio.to_thread(gvisor.sandbox_pid, machine_dir)
        if not self._host.own_network:
            raise NotSupported(
                "this host's local machines share the host's network (FLEET_SANDBOX_NETWORK="
                "host or no sandbox): an egress policy cannot be enforced on them"
            )
        root = await asyncio.to_thread(running_pid, machine_dir, machine_id)
        if root is None:
            return None
        children = sandbox_root_children(root)
        return children[0] if children else None

    def egress_on_interfaces(self, machine_id: str) -> bool:
        return gvisor.is_gvisor(self._dir(machine_id))

    def pasta_owners(self, machine_id: str) -> list[str]:
        return owners(self._dir(machine_id), machine_id)
