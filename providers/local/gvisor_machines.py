"""A local machine on gVisor (providers.gvisor): its sandbox started, restored from a memory image
(a fork with memory), paused to disk and resumed, stopped and its daemon restarted; its memory
image taken; root in its own kernel. NotSupported, named, where gvisor machines cannot run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from base.atomic import replace_file
from contracts.bus.events import HomeCopy
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import NotSupported, ProviderError
from controlplane.host_addresses import nats_servers
from controlplane.policy import Placement
from providers import gvisor
from providers.gvisor import ROOT_UID_FILE, ImageRoot, mount_root, readable_loader
from providers.local.home_copies import HomeCopies
from providers.local.homes import clone_home, make_home
from providers.local.host import LocalHost
from providers.local.processes import IMAGE_PATH, code_store, owners, supervised_argv
from providers.local.supervision import STOP_GRACE_S
from providers.machine_usage import runsc_memory
from providers.sandbox import (
    allocate_uid,
    hostname,
    overlay_dirs,
    read_uid,
    runtime_argv,
    runtime_env,
    stop_pasta,
)
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)


class GvisorMachines:
    """This host's gvisor machines, run by ``runsc`` (None: none here); ``netns_ready`` writes
    a machine's egress policy into the namespace a restore is about to run in."""

    def __init__(
        self, host: LocalHost, copies: HomeCopies, runsc: gvisor.Runsc | None,
        netns_ready: gvisor.NetnsReady | None,
    ) -> None:  # fmt: skip
        self._host = host
        self._copies = copies
        self._runsc = runsc
        self._netns_ready = netns_ready

    def shares(self) -> gvisor.Shares:
        """What a gvisor machine's sandbox shares of the host (``gvisor.bundle_spec``)."""
        return self._host.shared, self._host.data_dir

    def _nats_ports(self) -> set[int]:
        return {port for _, port in nats_servers(self._host.nats_url)}

    async def start(self, machine_id: str, token: str) -> str:
        """The machine on gVisor (providers/gvisor/runsc.py); NotSupported where it cannot run."""
        runsc = self.runsc()
        machine_dir = self._host.machine_dir(machine_id)
        cid = gvisor.running_container(machine_dir, machine_id)
        pid = await asyncio.to_thread(gvisor.sandbox_pid, machine_dir)
        state = None if pid is None else await asyncio.to_thread(runsc.status, cid, pid)
        if pid is not None and state == "running":  # a start or create again: it is up
            # A daemon a pause or a take left parked, its provisioner gone meanwhile, takes its
            # connection back; any other is left be (one just started would die of the signal).
            with contextlib.suppress(ProviderError):
                await asyncio.to_thread(gvisor.unpark_if_parked, runsc, machine_dir,
                                        machine_id, pid, cid)  # fmt: skip
            return f"local:{pid}"
        if pid is not None and state == "paused":  # a take's, its provisioner gone meanwhile
            await asyncio.to_thread(gvisor.left_frozen, runsc, machine_dir, machine_id, pid,
                                    cid, token)  # fmt: skip
            log.warning("provider.gvisor_thawed", machine_id=machine_id, pid=pid)
            return f"local:{pid}"
        # Stopped, or half made by a provisioner that died: started afresh.
        await asyncio.to_thread(gvisor.stop_sandbox, runsc, machine_dir, machine_id, 0.0)
        if (marker := machine_dir / gvisor.MARKER).is_file():  # a fork with memory
            return await self._restore_fork(machine_id, token, marker.read_text().strip())
        return await self._start_afresh(runsc, machine_id, token)

    async def _start_afresh(self, runsc: gvisor.Runsc, machine_id: str, token: str) -> str:
        host = self._host
        machine_dir = host.machine_dir(machine_id)
        home = host.home(machine_id)
        await asyncio.to_thread(make_home, home, host.cow)
        code_store(machine_dir).mkdir(mode=0o755, exist_ok=True)
        uid = await self._uid(machine_dir)
        env = host.machine_env(home, FLEET_MACHINE_ID=machine_id)
        place = await host.place(machine_id)
        as_root = place is not None and place.image is not None and place.root
        root = await asyncio.to_thread(self._root_uid, machine_dir, uid, as_root)
        await asyncio.to_thread(gvisor.write_token, machine_dir, token, machine_id)
        image = await self._image(machine_id, place, uid, root)
        argv = supervised_argv() if image is None else runtime_argv()
        if image is not None:  # the supervisor stays root; the runtime's own Python
            env |= runtime_env(None) | {"PATH": IMAGE_PATH}
        spec = gvisor.bundle_spec(machine_dir, home, env, uid, argv, hostname(machine_id),
                                  root, image, self.shares())  # fmt: skip
        bundle = await asyncio.to_thread(gvisor.write_bundle, machine_dir, spec)
        enter = await host.limited(machine_id, [], on_gvisor=True)
        log_path = machine_dir / "daemon.log"
        pid = await gvisor.start_sandbox(runsc, machine_id, bundle, log_path, machine_id, enter)
        log.info("provider.gvisor_started", machine_id=machine_id, pid=pid,
                 platform=runsc.platform)  # fmt: skip
        return f"local:{pid}"

    async def take_memory_image(
        self, machine_id: str, image_id: str, forks: int | None,
        renew: Callable[[], Awaitable[str]],
    ) -> tuple[int, float, HomeCopy]:  # fmt: skip
        """A gvisor machine checkpointed and restored at once, its memory image and a copy of
        its home kept for ``forks`` forks, or until deleted (None: a snapshot's)
        (providers/gvisor/fork.py); the image's size, how long the machine stood still (ms)
        and how its home was copied. ``renew``: its new credential, stored."""
        machine_dir = self._host.machine_dir(machine_id)
        if not gvisor.is_gvisor(machine_dir):
            raise NotSupported(f"machine {machine_id} runs the namespaces runtime: only a gvisor "
                               "machine can be forked with memory",
                               data={"runtime": "namespaces"})  # fmt: skip
        if gvisor.runs_image(machine_dir):  # a fork would lose the image's root
            raise NotSupported(f"machine {machine_id} runs an environment's image on gvisor: "
                               "it cannot be forked or snapshotted with memory yet "
                               "(docs/limitations.md)", data={"runtime": "gvisor"})  # fmt: skip
        runsc = self._checked_runsc()
        target = self._copies.snapshot_dir(image_id)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        upper = self._copies.snapshot_upper(image_id)
        from_upper = overlay_dirs(machine_dir)[0]

        async def copy_home() -> HomeCopy:
            return await asyncio.to_thread(
                clone_home, self._host.home(machine_id), target, label=machine_id, uid=None,
                cgroups=[], readonly=True,
                upper=(from_upper, upper) if from_upper.is_dir() else None,
            )  # fmt: skip

        try:
            return await gvisor.take_image(
                runsc, machine_dir, machine_id, nats_ports=self._nats_ports(),
                memory=self._copies.memory_dir(image_id), forks=forks, copy_home=copy_home,
                renew=renew,
            )  # fmt: skip
        except BaseException:  # nothing of a failed image is kept: its copy of the home too
            await self._copies.drop_snapshot(image_id)
            raise

    async def _restore_fork(self, machine_id: str, token: str, image_id: str) -> str:
        """A fork with memory restored from its source's image (its home copied already); the
        image dropped after its last fork."""
        runsc = self._checked_runsc()
        machine_dir = self._host.machine_dir(machine_id)
        memory = self._copies.memory_dir(image_id)
        code_store(machine_dir).mkdir(mode=0o755, exist_ok=True)
        await asyncio.to_thread(self._host.own_uid_in, machine_dir)
        enter = await self._host.limited(machine_id, [], on_gvisor=True)
        pid = await gvisor.restore_fork(runsc, machine_dir, machine_id, token, memory, enter,
                                        self._netns_ready)  # fmt: skip
        (machine_dir / gvisor.MARKER).unlink(missing_ok=True)
        if await asyncio.to_thread(gvisor.one_fork_less, memory):
            await self._copies.drop_snapshot(image_id)
            await asyncio.to_thread(remove_tree, memory)
        return f"local:{pid}"

    async def pooled(self, slot: str, home: Path) -> tuple[gvisor.Runsc, int, int, list[str]]:
        """A pooled gvisor sandbox's runsc, uid (``<slot dir>/uid``), root's host uid
        (``<slot dir>/root-uid``: a claim moves both to the machine) and cgroup entry (the
        slot's own, with the platform's default limits until a claim applies its instance's),
        as ``pooled_argv`` for a bwrap one; NotSupported where gvisor machines cannot run."""
        runsc = self.runsc()
        uid = await self._uid(home.parent)
        root = await asyncio.to_thread(self._root_uid, home.parent, uid, False)
        code_store(home.parent).mkdir(mode=0o755, exist_ok=True)
        limits = self._host.default_limits
        return runsc, uid, root, await self._host.limited(slot, [], limits, on_gvisor=True)

    async def _uid(self, machine_dir: Path) -> int:
        """The uid of a gvisor machine (or pool slot) in ``machine_dir``, its home given to it;
        NotSupported where there are no uids to give."""
        uid = await asyncio.to_thread(self._host.own_uid_in, machine_dir)
        if uid is None:
            raise NotSupported("a gvisor machine runs as a uid of its own, and this host has "
                               "none (FLEET_SANDBOX_UIDS)", data={"runtime": "gvisor"})  # fmt: skip
        return uid

    def runsc(self) -> gvisor.Runsc:
        """What runs gvisor machines here; NotSupported, named, where nothing does or where
        they could not reach NATS (on the host's loopback, with no gateway to map it to)."""
        runsc = self._checked_runsc()
        gvisor.machine_nats_url(self._host.nats_url)
        return runsc

    def _root_uid(self, machine_dir: Path, uid: int, as_root: bool) -> int:
        """The host uid of the machine's root: its own uid when its user is root (a
        devcontainer's ``remoteUser: root``: root inside is then that uid alone), else one of
        its own beside it (``ROOT_UID_FILE``)."""
        assert self._host.uids is not None  # the machine's uid was allocated from them
        path = machine_dir / ROOT_UID_FILE
        if as_root:
            replace_file(path, str(uid))
            return uid
        if read_uid(path) == uid:  # never two ids inside on one host uid
            path.unlink()
        return allocate_uid(path, self._host.machines, self._host.uids)

    async def _image(self, machine_id: str, place: Placement | None, uid: int,
                     root: int) -> ImageRoot | None:  # fmt: skip
        """The environment's image a gvisor machine runs (unpacked once, mounted as its root:
        providers/gvisor/image.py), or None: the host's system."""
        host = self._host
        if place is None or place.image is None or host.engine is None:
            return None
        lower = await host.image_roots.ensure(host.engine(), place.image)
        merged = await asyncio.to_thread(mount_root, host.machine_dir(machine_id), lower, root,
                                         uid, place.user)  # fmt: skip
        loader = await asyncio.to_thread(readable_loader, host.data_dir)
        return ImageRoot(merged, loader, place.user, root == uid)

    def _checked_runsc(self) -> gvisor.Runsc:
        why = None if self._runsc is None else gvisor.probe(self._runsc.binary)
        if self._runsc is None or why is not None or not self._host.sandbox:
            raise NotSupported(
                f"this host's local provider does not run gvisor machines: {why or 'no runsc'}",
                data={"runtime": "gvisor"},
            )
        return self._runsc

    def _any_runsc(self) -> gvisor.Runsc:
        """A runsc to stop or signal what runs: the one configured, else the default."""
        return self._runsc or gvisor.Runsc("runsc", "ptrace", self._host.data_dir)

    async def exec_as_root(self, machine_id: str, params: ExecCommandParams) -> ExecCommandResult:
        """Root of the machine's own kernel (gvisor machines only; runsc exec --user 0)."""
        machine_dir = self._host.machine_dir(machine_id)
        if not gvisor.is_gvisor(machine_dir):
            raise NotSupported(f"machine {machine_id} is not a gvisor machine: no root in it",
                               data={"runtime": "namespaces", "user": "root"})  # fmt: skip
        return await gvisor.exec_as_root(self._checked_runsc(), machine_dir, machine_id, params)

    async def pause(self, machine_id: str) -> int:
        """A gvisor machine checkpointed to disk, its sandbox gone (providers/gvisor/pause.py);
        the image's size."""
        machine_dir = self._host.machine_dir(machine_id)
        if not gvisor.is_gvisor(machine_dir):
            raise NotSupported(f"machine {machine_id} runs the namespaces runtime: only a gvisor "
                               "machine can be paused", data={"runtime": "namespaces"})  # fmt: skip
        runsc = self._checked_runsc()
        size = await gvisor.pause_sandbox(runsc, machine_dir, machine_id, self._nats_ports())
        # Its own namespace is kept for its resume, with its pasta; any other (a pooled
        # sandbox's was its slot's) ends.
        kept = await asyncio.to_thread(gvisor.held_netns, machine_dir, machine_id)
        named = owners(machine_dir, machine_id)
        await asyncio.to_thread(stop_pasta, *(o for o in named if kept is None or o != machine_id))
        log.info("provider.gvisor_paused", machine_id=machine_id, bytes=size,
                 kept_netns=kept is not None)  # fmt: skip
        return size

    async def resume(self, machine_id: str) -> str:
        """A paused gvisor machine restored from its image; its external id (its sandbox)."""
        runsc = self._checked_runsc()
        enter = await self._host.limited(machine_id, [], on_gvisor=True)
        pid = await gvisor.resume_sandbox(runsc, self._host.machine_dir(machine_id), machine_id,
                                          enter, self._netns_ready,
                                          nats_ports=self._nats_ports())  # fmt: skip
        return f"local:{pid}"

    async def stop(self, machine_id: str) -> bool:
        machine_dir = self._host.machine_dir(machine_id)
        named = tuple(owners(machine_dir, machine_id))
        return await asyncio.to_thread(gvisor.stop_machine, self._any_runsc(), machine_dir,
                                       machine_id, STOP_GRACE_S, named)  # fmt: skip

    async def restart(self, machine_id: str) -> bool:
        """Restart the machine's daemon in place (its processes stay); False if not running."""
        machine_dir = self._host.machine_dir(machine_id)
        return await gvisor.restart_daemon(self._any_runsc(), machine_dir, machine_id,
                                           owners(machine_dir, machine_id),
                                           self._nats_ports())  # fmt: skip

    def kernel_memory(self, machine_dir: Path, machine_id: str, pid: int) -> int | None:
        """The memory its sandbox's kernel says it uses (``runsc events --stats``); None where
        it cannot be read (no runsc here)."""
        if self._runsc is None:
            return None
        cid = gvisor.running_container(machine_dir, machine_id)
        stats = self._runsc.run("events", "--stats", cid, inside=pid, timeout_s=10)
        return runsc_memory(stats.stdout) if stats.returncode == 0 else None
