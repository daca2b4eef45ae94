"""Machine providers: how a machine is started and stopped.

``local`` runs ``fleet-daemon`` on this host under its supervisor (``daemon.supervise``: a
daemon that dies is started again), in a bubblewrap sandbox (``providers/sandbox/bwrap.py``) unless
the operator turned that off, with its own home ``<data-dir>/machines/<machineId>/home``. The
machine's root process (bwrap, or the supervisor without a sandbox) is recorded in
``daemon.pid``; it outlives a provisioner restart (as a cloud machine would). Its host pid is
the machine's external id (``local:<pid>``): the daemon runs under it, so the id stays true
across daemon restarts and handovers to newer code, which change only the daemon's own pid.
``stop_all_local`` is what ``fleet up`` calls on shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiodocker
import msgspec
import structlog

from base import procinfo
from base.atomic import replace_file
from base.codestore import CODE_MOUNT, STORE_VAR
from base.hostile_fs import disk_bytes
from base.keyed_locks import KeyedLocks
from base.lockfile import holder_pid
from base.poolwire import POOL_SLOT_VAR
from base.procinfo import env_roots
from base.version import SOURCE_ROOT, git_sha
from base.wait import wait_until
from contracts.daemon_rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import NotSupported, ProviderError
from contracts.events import HomeCopy
from contracts.ids import SNAPSHOT_ID_RE
from providers import gvisor
from providers.code import install_code
from providers.gvisor import ROOT_UID_FILE, ImageRoot, mount_root, readable_loader, remove_root
from providers.local.homes import clone_home, is_subvolume, make_home, remove_home
from providers.local.image_rootfs import ImageRoots
from providers.machine_limits import Limits, Placement, PlacementOf, on_host
from providers.machine_usage import Usage, home_disk, local_usage, runsc_memory
from providers.sandbox import (
    SANDBOX_LOADER,
    SECCOMP_FD,
    TOKEN_FD,
    MachineCgroup,
    UserMap,
    allocate_uid,
    bwrap_argv,
    docker_default_bpf,
    execute_only_loader,
    give_home,
    give_upper,
    has_pasta,
    hostname,
    loopback_ports,
    mount_overlay,
    nats_servers,
    overlay_dirs,
    read_uid,
    remove_overlay,
    runtime_argv,
    runtime_env,
    sandbox_root_children,
    start_sandboxed,
    stop_pasta,
    supervisor_pid,
    token_pipe,
    unmount_overlay,
)
from providers.scratch import remove_tree

log = structlog.get_logger(__name__)
#: A machine of an environment's image: the image's programs, not the host's PATH.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Environment variables a local daemon inherits from the platform (everything else is dropped).
INHERITED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "FLEET_ENV",
    "FLEET_LOG_LEVEL",
    "FLEET_GIT_SHA",
    "FLEET_EXEC_OUTPUT_CAP",
    "FLEET_HEARTBEAT_S",
)


def daemon_argv() -> list[str]:
    script = Path(sys.executable).with_name("fleet-daemon")
    if script.exists():
        return [str(script)]
    # -I: a `daemon/` directory in the machine's home must never shadow the real package.
    return [sys.executable, "-I", "-m", "daemon"]


def supervised_argv(loader: str | None = None) -> list[str]:
    """The supervisor, which runs the daemon (and runs it again when it dies); both through
    the execute-only ``loader`` when given (non-dumpable: see daemon/nodump.py)."""
    if loader is None:
        return [sys.executable, "-I", "-m", "daemon.supervise", *daemon_argv()]
    python = [loader, sys.executable, "-I", "-m"]
    return [*python, "daemon.supervise", *python, "daemon"]


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
    ) -> None:
        self._data_dir = data_dir.resolve()
        #: What runs gvisor machines (providers/gvisor/runsc.py); None: none here.
        self._runsc = runsc
        #: Homes are btrfs subvolumes: a fork is a snapshot (providers/local/homes.py).
        self.cow = cow
        #: The Docker engine environments' images are unpacked from (None: none).
        self._engine = engine
        self._image_roots = ImageRoots(self._data_dir)
        self._root = self._data_dir / "machines"
        #: False only when the operator said so (fleet up --no-sandbox): not isolated.
        self.sandbox = sandbox
        self._shared = shared
        self._nats_url = nats_url
        self._environ = environ
        self._children: dict[str, int] = {}
        #: One copy of a machine's home at a time: two would share one freeze, and the first
        #: to thaw would leave the second copying a machine that runs (or waiting for a
        #: freeze that never comes).
        self._copying = KeyedLocks()
        #: A sandboxed machine's limits (its cgroup, providers/sandbox/cgroup.py); None: no limits.
        self._placement = placement
        #: Writes a machine's egress policy into the namespace a gvisor restore is about to
        #: run in (services/provisioner/egress.py ``netns_policy``): never after it.
        self._netns_ready = netns_ready
        #: A pooled machine's limits before its claim (then its instance's).
        self._default_limits = default_limits or Limits()
        #: Sandboxed machines' own uids (providers/sandbox/machine_uid.py); None: the platform's.
        self._uids = uids if sandbox else None
        self._code_repo = code_repo or SOURCE_ROOT
        #: A sandboxed machine's network is its own (providers/sandbox/netns.py) unless the operator
        #: said otherwise (FLEET_SANDBOX_NETWORK=host); the host's loopback ports it reaches:
        #: NATS's, and ``forwarded`` (FLEET_SANDBOX_LOOPBACK_PORTS).
        self.own_network = own_network and sandbox
        self._forwarded = sorted({*loopback_ports(nats_url), *forwarded})
        #: Docker's default syscall filter, compiled once (providers/sandbox/seccomp.py).
        self._seccomp = docker_default_bpf() if sandbox else b""

    @property
    def runs_images(self) -> bool:
        """An environment's image runs in the sandbox, in place of the host's system."""
        return self.sandbox and self._engine is not None

    async def _image_root(
        self, machine_id: str, uid: int | None
    ) -> tuple[Path | None, UserMap | None]:
        """The machine's root when it runs an environment's image (its overlay, mounted), and
        the user namespace it runs in (providers/sandbox/userns.py): its image's user on its own
        ``uid`` when it has one, else ``uid`` itself. The supervisor starts there, so that even
        before it becomes that user it can become no other host uid."""
        if self._placement is None or self._engine is None:
            return None, None
        place = await self._placement(machine_id)
        if place.image is None:
            return None, None
        user = None
        if place.user is not None:
            if uid is None:  # mapped onto root's uid, it would be root on the host
                raise ProviderError(
                    f"{machine_id} acts as its image's user {place.user[0]}, which needs a uid "
                    "of its own (FLEET_SANDBOX_UIDS)"
                )
            user = UserMap(uid=place.user[0], gid=place.user[1], host=uid)
        elif uid is not None:
            user = UserMap(uid=uid, gid=uid, host=uid)
        lower = await self._image_roots.ensure(self._engine(), place.image)
        merged = await asyncio.to_thread(mount_overlay, self.machine_dir(machine_id), lower)
        return merged, user

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        """Install the commit in the machine's code store, beside its home (never in it): the
        sandbox has it read-only (``CODE_MOUNT``), and the platform's record says it is current."""
        store = code_store(self.machine_dir(machine_id))
        sha, new = await asyncio.to_thread(install_code, self._code_repo, target_ref, store)
        return f"{'installed' if new else 'already had'} code {sha[:12]} in {CODE_MOUNT}"

    def machine_dir(self, machine_id: str) -> Path:
        return self._root / machine_id

    def home(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "home"

    async def start(self, machine_id: str, token: str) -> str:
        self._reap()
        place = None if self._placement is None else await self._placement(machine_id)
        if place is not None and place.runtime == "gvisor":
            if place.egress_names:  # refused before anything of it runs unfiltered
                raise NotSupported(
                    f"{machine_id} runs the gvisor runtime, on which egress policy by name is "
                    f"not enforced, and its instance's names {place.egress_names[:3]} "
                    "(docs/limitations.md)",
                    data={"runtime": "gvisor"},
                )
            return await self._start_gvisor(machine_id, token)
        pid = running_pid(self.machine_dir(machine_id), machine_id)
        orphan = None if pid is None else await asyncio.to_thread(self._orphan, machine_id, pid)
        if pid is not None and orphan is None:
            return f"local:{pid}"  # a redelivered machine.created: the daemon is already up
        if pid is not None and orphan is not None:
            # Started (or claimed from the warm pool) by a provisioner that died before giving
            # it its network or its identity: its daemon can never serve, so it is ended and
            # started again (we hold the machine's start lock).
            log.warning("provider.local_orphan", machine_id=machine_id, pid=pid, ended_by=orphan)
            await asyncio.to_thread(self._end_orphan, machine_id, pid, orphan)
        home = self.home(machine_id)
        await asyncio.to_thread(make_home, home, self.cow)
        code_store(self.machine_dir(machine_id)).mkdir(mode=0o755, exist_ok=True)
        uid = await asyncio.to_thread(self.own_uid, machine_id)
        env = self.machine_env(
            home,
            FLEET_MACHINE_ID=machine_id,
            # Not the token: bwrap's init would keep it in its environment, readable by the
            # machine's commands. A pipe the supervisor reads first (daemon/nodump.py).
            FLEET_MACHINE_TOKEN_FD=str(TOKEN_FD),
        )
        root, user = await self._image_root(machine_id, uid) if self.sandbox else (None, None)
        if root is not None:  # the supervisor becomes the machine's uid, or its image's user
            run_as = uid if user is None else f"{user.uid}:{user.gid}"
            env |= runtime_env(run_as) | {"PATH": IMAGE_PATH}
        argv = self.argv(machine_id, uid, root=root, userns=user is not None)
        argv = await self._limited(machine_id, argv)
        token_fd = token_pipe(token)
        try:
            log_path = self.machine_dir(machine_id) / "daemon.log"
            pid = await self.spawn(argv, env, log_path, machine_id, {TOKEN_FD: token_fd}, user)
        except BaseException:
            os.close(token_fd)
            raise
        await self._check_token_pipe(machine_id, pid, token_fd)
        self._children[machine_id] = pid
        write_pid(self.machine_dir(machine_id), pid)
        log.info("provider.local_started", machine_id=machine_id, pid=pid, sandbox=self.sandbox)
        return f"local:{pid}"

    async def _check_token_pipe(self, machine_id: str, pid: int, token_fd: int) -> None:
        """Close our end of the token's pipe. Already closed (EBADF): its number was closed
        under us and may have been another descriptor when the machine was spawned, so its
        supervisor may hold no token (seen once under chaos: a machine whose daemon never got
        one, and a redelivered start that found it running). Such a machine is ended and the
        start fails, so that its retry starts it afresh with a token of its own."""
        try:
            os.close(token_fd)
        except OSError as exc:
            log.error("provider.local_token_pipe_lost", machine_id=machine_id, pid=pid,
                      error=str(exc))  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                await asyncio.to_thread(os.waitpid, pid, 0)
            (self.machine_dir(machine_id) / "daemon.pid").unlink(missing_ok=True)
            raise ProviderError(f"{machine_id}'s token pipe was lost at its start") from None

    def snapshot_dir(self, snapshot_id: str) -> Path:
        """A snapshot of a home: on the homes' filesystem, the platform's alone."""
        return self._data_dir / "snapshots" / snapshot_id

    def snapshot_upper(self, snapshot_id: str) -> Path:
        """A snapshot's writes outside the home (its machine's overlay layer), beside it."""
        return self._data_dir / "snapshots" / f"{snapshot_id}.upper"

    def memory_dir(self, snapshot_id: str) -> Path:
        """A memory image of a gvisor machine, beside the copy of its home (the snapshot)."""
        return self._data_dir / "snapshots" / f"{snapshot_id}.memory"

    async def take_memory_image(
        self, machine_id: str, image_id: str, forks: int | None,
        renew: Callable[[], Awaitable[str]],
    ) -> tuple[int, float, HomeCopy]:  # fmt: skip
        """A gvisor machine checkpointed and restored at once, its memory image and a copy of
        its home kept for ``forks`` forks, or until deleted (None: a snapshot's)
        (providers/gvisor/fork.py); the image's size, how long the machine stood still (ms)
        and how its home was copied. ``renew``: its new credential, stored."""
        machine_dir = self.machine_dir(machine_id)
        if not gvisor.is_gvisor(machine_dir):
            raise NotSupported(f"machine {machine_id} runs the namespaces runtime: only a gvisor "
                               "machine can be forked with memory",
                               data={"runtime": "namespaces"})  # fmt: skip
        if gvisor.runs_image(machine_dir):  # a fork would lose the image's root
            raise NotSupported(f"machine {machine_id} runs an environment's image on gvisor: "
                               "it cannot be forked or snapshotted with memory yet "
                               "(docs/limitations.md)", data={"runtime": "gvisor"})  # fmt: skip
        runsc = self._gvisor_runsc()
        target = self.snapshot_dir(image_id)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        upper = self.snapshot_upper(image_id)
        from_upper = overlay_dirs(machine_dir)[0]

        async def copy_home() -> HomeCopy:
            return await asyncio.to_thread(
                clone_home, self.home(machine_id), target, label=machine_id, uid=None,
                cgroups=[], readonly=True,
                upper=(from_upper, upper) if from_upper.is_dir() else None,
            )  # fmt: skip

        try:
            return await gvisor.take_image(
                runsc, machine_dir, machine_id,
                nats_ports={port for _, port in nats_servers(self._nats_url)},
                memory=self.memory_dir(image_id), forks=forks, copy_home=copy_home,
                renew=renew,
            )  # fmt: skip
        except BaseException:  # nothing of a failed image is kept: its copy of the home too
            await self.drop_snapshot(image_id)
            raise

    async def _restore_fork(self, machine_id: str, token: str, image_id: str) -> str:
        """A fork with memory restored from its source's image (its home copied already); the
        image dropped after its last fork."""
        runsc = self._gvisor_runsc()
        machine_dir = self.machine_dir(machine_id)
        memory = self.memory_dir(image_id)
        code_store(machine_dir).mkdir(mode=0o755, exist_ok=True)
        await asyncio.to_thread(self.own_uid, machine_id)
        enter = await self._limited(machine_id, [], on_gvisor=True)
        pid = await gvisor.restore_fork(runsc, machine_dir, machine_id, token, memory, enter,
                                             self._netns_ready)  # fmt: skip
        (machine_dir / gvisor.MARKER).unlink(missing_ok=True)
        if await asyncio.to_thread(gvisor.one_fork_less, memory):
            await self.drop_snapshot(image_id)
            await asyncio.to_thread(remove_tree, memory)
        return f"local:{pid}"

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        target = self.snapshot_dir(snapshot_id)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        return await self._copy_home(
            machine_id, target, self.snapshot_upper(snapshot_id), readonly=True
        )

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        """The snapshot's home copy, layer and memory image removed (whichever were made: a
        failed take leaves some); False if it had no home copy."""
        target = self.snapshot_dir(snapshot_id)
        upper = self.snapshot_upper(snapshot_id)
        if upper.exists():
            await asyncio.to_thread(remove_tree, upper)
        await asyncio.to_thread(remove_tree, self.memory_dir(snapshot_id))
        if not target.exists():
            return False
        await asyncio.to_thread(remove_home, target)
        return True

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        """What the machine uses now (providers/machine_usage.py), its home's disk too when
        ``disk``; None if nothing of it runs here."""
        return await asyncio.to_thread(self._usage, machine_id, disk)

    def _usage(self, machine_id: str, disk: bool) -> Usage | None:
        mdir = self.machine_dir(machine_id)
        on_gvisor = gvisor.is_gvisor(mdir)
        if on_gvisor:
            pid = gvisor.sandbox_pid(mdir)
        else:
            root = running_pid(mdir, machine_id) if self.own_network else None
            pid = next(iter(sandbox_root_children(root)), None) if root is not None else None
        got = local_usage([MachineCgroup(o) for o in owners(mdir, machine_id)], pid)
        if got is None:
            return None
        if on_gvisor and self._runsc is not None and pid is not None:
            cid = gvisor.running_container(mdir, machine_id)
            stats = self._runsc.run("events", "--stats", cid, inside=pid, timeout_s=10)
            kernel = runsc_memory(stats.stdout) if stats.returncode == 0 else None
            got = dataclasses.replace(got, memory_bytes=kernel or got.memory_bytes)
        return got.with_disk(*home_disk(self.home(machine_id))) if disk else got

    async def disk_bytes(self, source_id: str) -> int:
        """What a machine's home and layer, or a snapshot's copies and memory image, take on
        this host's disk (base/hostile_fs.py: never following a path the machine controls)."""
        if SNAPSHOT_ID_RE.match(source_id):
            parts = [self.snapshot_dir(source_id), self.snapshot_upper(source_id),
                     self.memory_dir(source_id)]  # fmt: skip
        else:
            parts = [self.home(source_id), overlay_dirs(self.machine_dir(source_id))[0]]
        return sum([await asyncio.to_thread(_bytes_of, p) for p in parts])

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        """``machine_id``'s home, ``source_id``'s as of one instant (a machine, running or
        stopped, or a snapshot); kept if already made (a redelivered create), as is how it was
        made."""
        record = self.machine_dir(machine_id) / HOME_COPY_FILE
        if record.is_file():
            return msgspec.json.decode(record.read_bytes(), type=HomeCopy)
        target = self.home(machine_id)
        upper = overlay_dirs(self.machine_dir(machine_id))[0]
        if target.exists():  # a copy cut short: made again
            await asyncio.to_thread(remove_home, target)
        if upper.exists():
            await asyncio.to_thread(remove_tree, upper)
        if SNAPSHOT_ID_RE.match(source_id):  # no process can change a snapshot: no freeze
            source = self.snapshot_dir(source_id)
            if not source.is_dir():
                raise ProviderError(f"snapshot {source_id} is not on this host")
            from_upper = self.snapshot_upper(source_id)
            copied = await asyncio.to_thread(
                clone_home, source, target, label=source_id, uid=None, cgroups=[],
                upper=(from_upper, upper) if from_upper.is_dir() else None,
            )  # fmt: skip
            if self.memory_dir(source_id).is_dir():  # its start restores the memory too
                memory = self.memory_dir(source_id)
                await asyncio.to_thread(gvisor.prepare_fork, memory, target.parent)
                (target.parent / gvisor.MARKER).write_text(source_id)
        else:
            copied = await self._copy_home(source_id, target, upper)
        if self._uids is not None and upper.is_dir():  # the source's writes: the fork's own
            mine = allocate_uid(self.machine_dir(machine_id) / "uid", self._root, self._uids)
            await asyncio.to_thread(give_upper, upper, mine, self._uids)
        record.write_bytes(msgspec.json.encode(copied))
        log.info("provider.local_home_cloned", machine_id=machine_id, source=source_id,
                 how=copied.how, pause_ms=copied.pause_ms, took_ms=copied.took_ms)  # fmt: skip
        return copied

    async def _copy_home(
        self, source_id: str, target: Path, upper: Path, readonly: bool = False
    ) -> HomeCopy:
        """``target``, a copy of machine ``source_id``'s home as of one instant, and ``upper``
        of what it wrote outside its home (an environment's overlay), if it has any."""
        source_dir = self.machine_dir(source_id)
        if (source_dir / gvisor.UPPER).is_dir():  # its root's writes: another layer
            raise NotSupported(f"machine {source_id} runs an environment's image on gvisor: "
                               "a copy of it would lose what it wrote outside its home, so it "
                               "cannot be forked or snapshotted yet (docs/limitations.md)",
                               data={"runtime": "gvisor"})  # fmt: skip
        from_upper = overlay_dirs(source_dir)[0]
        uid = (
            None if self._uids is None else allocate_uid(source_dir / "uid", self._root, self._uids)
        )
        cgroups = [MachineCgroup(o) for o in owners(source_dir, source_id)]
        async with self._copying.held(source_id):
            running = await asyncio.to_thread(running_pid, source_dir, source_id) is not None
            return await asyncio.to_thread(
                clone_home, self.home(source_id), target, label=source_id, uid=uid,
                cgroups=cgroups, running=running, readonly=readonly,
                upper=(from_upper, upper) if from_upper.is_dir() else None,
            )  # fmt: skip

    def machine_env(self, home: Path, **fleet: str) -> dict[str, str]:
        """A machine root's environment: what it inherits, its home, NATS, and ``fleet``."""
        env = {k: v for k, v in self._environ.items() if k in INHERITED_ENV}
        env |= {"HOME": str(home), "FLEET_HOME": str(home), "FLEET_NATS_URL": self._nats_url}
        env[STORE_VAR] = CODE_MOUNT if self.sandbox else str(code_store(home.parent))
        if self.sandbox:
            env["FLEET_NODUMP_LOADER"] = SANDBOX_LOADER
        if self.sandbox and not env.get("FLEET_GIT_SHA"):
            # The checkout's .git is not mounted in the sandbox: say which code this is.
            env["FLEET_GIT_SHA"] = git_sha() or ""
        return env | fleet

    async def spawn(
        self, argv: list[str], env: dict[str, str], log_path: Path, owner: str,
        fds: dict[int, int], user: UserMap | None = None,
    ) -> int:  # fmt: skip
        """Start a machine's root (``owner``: its id, or its pool slot) with ``fds``; in the
        sandbox, with the syscall filter, unless turned off its own network, and with ``user``
        its image's user in a user namespace."""
        if not self.sandbox:
            return spawn_detached(argv, env, log_path, "fleet-daemon", fds)
        return await start_sandboxed(
            lambda more: spawn_detached(argv, env, log_path, "fleet-daemon", fds | more),
            owner=owner,
            seccomp=self._seccomp,
            seccomp_fd=SECCOMP_FD,
            forwarded=self._forwarded if self.own_network else None,
            user=user,
        )

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def shared(self) -> tuple[Path, ...]:
        return self._shared

    def shares(self) -> gvisor.Shares:
        """What a gvisor machine's sandbox shares of the host (``gvisor.bundle_spec``)."""
        return self._shared, self._data_dir

    def adopt(self, machine_id: str, pid: int) -> None:
        """A root this process started for the pool is now ``machine_id``'s: reap it."""
        self._children[machine_id] = pid

    def _orphan(self, machine_id: str, pid: int) -> str | None:
        """Why the machine's running root ``pid`` can never serve (how it is to be recorded as
        ended), or None: a sandbox that should have a network of its own and has no way out
        (providers/sandbox/netns.py has_pasta), or a pooled root that was never told which machine
        it is (its claimer died between the claim and the hand-over)."""
        machine_dir = self.machine_dir(machine_id)
        if self.own_network and not has_pasta(*owners(machine_dir, machine_id)):
            return CUT_OFF
        try:
            slot = (machine_dir / POOL_SLOT_FILE).read_text().strip()
        except OSError:
            return None
        if not _is_root_of(pid, [(POOL_SLOT_VAR, slot)]):
            return None  # started cold, for this machine by its id
        try:
            told = (machine_dir / IDENTIFIED_FILE).read_text().strip()
        except OSError:
            told = ""
        return None if told == slot else NEVER_IDENTIFIED

    def _end_orphan(self, machine_id: str, pid: int, ended_by: str) -> None:
        stop_local(self.machine_dir(machine_id), machine_id, 0.0, ended_by)
        if self._children.pop(machine_id, None) == pid:  # recorded as ended_by, not as -9
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def own_uid(self, machine_id: str) -> int | None:
        """The machine's uid (allocated once), its home given to it; None: the platform's."""
        return self._own_uid_in(self.machine_dir(machine_id))

    def _own_uid_in(self, machine_dir: Path) -> int | None:
        """The uid recorded in ``machine_dir`` (a machine's, or a pool slot's: its machine's at
        claim), allocated if new; ``home`` and ``daemon.log`` there given to it."""
        if self._uids is None:
            return None
        uid = allocate_uid(machine_dir / "uid", self._root, self._uids)
        give_home(machine_dir / "home", uid)
        # Its log too: the daemon reads it back (daemon.log) through its own stdout.
        log_path = machine_dir / "daemon.log"
        log_path.touch(mode=0o600)
        os.chown(log_path, uid, uid)
        return uid

    def argv(
        self, machine_id: str, uid: int | None = None, home: Path | None = None,
        root: Path | None = None, userns: bool = False,
    ) -> list[str]:  # fmt: skip
        """The machine's root process: the supervisor, inside the sandbox unless turned off;
        in ``root`` (an environment's image, providers/sandbox/image.py) when given, in a user
        namespace of its own with ``userns`` (providers/sandbox/userns.py)."""
        if not self.sandbox:
            return supervised_argv()
        home = home or self.home(machine_id)
        return bwrap_argv(
            machine_id=machine_id,
            home=home,
            code=code_store(home.parent),
            data_dir=self._data_dir,
            command=runtime_argv() if root is not None else supervised_argv(SANDBOX_LOADER),
            root=root,
            shared=self._shared,
            loader=execute_only_loader(self._data_dir),
            uid=uid,
            own_network=self.own_network,
            userns=userns,
        )

    async def pooled_argv(self, slot: str, home: Path) -> list[str]:
        """A pooled machine's root: as a machine's, under a uid and a cgroup of the slot's
        own (``<slot dir>/uid``; the platform's default limits until a claim applies its
        instance's)."""
        uid = await asyncio.to_thread(self._own_uid_in, home.parent)
        code_store(home.parent).mkdir(mode=0o755, exist_ok=True)
        return await self._limited(slot, self.argv(slot, uid, home), self._default_limits)

    def shares_present(self) -> tuple[bool, ...]:
        """Which shared paths exist now: a sandbox binds those that existed at its start."""
        return tuple(p.exists() for p in self._shared)

    async def claim_slot(
        self, slot: str, slot_dir: Path, machine_id: str, *, on_gvisor: bool = False
    ) -> None:
        """A pooled machine is ``machine_id``'s now: the slot's uid becomes its uid, and its
        cgroup gets the instance's limits (a live change: the processes stay)."""
        uid_file = slot_dir / "uid"
        if uid_file.is_file():
            uid_file.replace(self.machine_dir(machine_id) / "uid")
        if self._placement is None:
            return
        limits = on_host((await self._placement(machine_id)).limits, on_gvisor)
        group = MachineCgroup(slot)
        if all(d.is_dir() for d in group.dirs):
            await asyncio.to_thread(group.create, limits)

    async def forget_slot(self, slot: str) -> None:
        """The cgroup an unclaimed pooled machine held (its uid went with its directory)."""
        await asyncio.to_thread(MachineCgroup(slot).remove)

    async def _limited(
        self, machine_id: str, argv: list[str], limits: Limits | None = None, *,
        on_gvisor: bool = False,
    ) -> list[str]:  # fmt: skip
        """``argv`` started in the machine's own cgroup with its limits (a gvisor sandbox's as
        ``on_host`` counts them), where cgroups can be made (fleet up said so loudly where
        not)."""
        if not self.sandbox or self._placement is None:
            return argv
        if limits is None:
            limits = (await self._placement(machine_id)).limits
        limits = on_host(limits, on_gvisor)
        group = MachineCgroup(machine_id)
        try:
            await asyncio.to_thread(group.create, limits)
        except OSError as exc:
            log.warning("provider.local_no_limits", machine_id=machine_id, error=str(exc))
            return argv
        log.info("provider.local_limits", machine_id=machine_id, memory_mb=limits.memory_mb,
                 cpus=limits.cpus, pids=limits.pids)  # fmt: skip
        return group.enter_argv(argv)

    async def _start_gvisor(self, machine_id: str, token: str) -> str:
        """The machine on gVisor (providers/gvisor/runsc.py); NotSupported where it cannot run."""
        runsc = self.gvisor_runsc()
        machine_dir = self.machine_dir(machine_id)
        cid = gvisor.running_container(machine_dir, machine_id)
        pid = await asyncio.to_thread(gvisor.sandbox_pid, machine_dir)
        state = None if pid is None else await asyncio.to_thread(runsc.status, cid, pid)
        if pid is not None and state == "running":  # a redelivered machine.created: it is up
            # A daemon a pause or a take left parked, its provisioner gone meanwhile, takes its
            # connection back (one that is not parked is not touched).
            with contextlib.suppress(ProviderError):
                await asyncio.to_thread(gvisor.signal_daemon, runsc, machine_id, pid,
                                        "USR2", cid)  # fmt: skip
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
        home = self.home(machine_id)
        await asyncio.to_thread(make_home, home, self.cow)
        code_store(machine_dir).mkdir(mode=0o755, exist_ok=True)
        uid = await self._gvisor_uid(machine_dir)
        env = self.machine_env(home, FLEET_MACHINE_ID=machine_id)
        place = None if self._placement is None else await self._placement(machine_id)
        as_root = place is not None and place.image is not None and place.root
        root = await asyncio.to_thread(self._gvisor_root_uid, machine_dir, uid, as_root)
        await asyncio.to_thread(gvisor.write_token, machine_dir, token, machine_id)
        image = await self._gvisor_image(machine_id, place, uid, root)
        argv = supervised_argv() if image is None else runtime_argv()
        if image is not None:  # the supervisor stays root; the runtime's own Python
            env |= runtime_env(None) | {"PATH": IMAGE_PATH}
        spec = gvisor.bundle_spec(machine_dir, home, env, uid, argv, hostname(machine_id),
                                  root, image, self.shares())  # fmt: skip
        bundle = await asyncio.to_thread(gvisor.write_bundle, machine_dir, spec)
        enter = await self._limited(machine_id, [], on_gvisor=True)
        log_path = machine_dir / "daemon.log"
        pid = await gvisor.start_sandbox(runsc, machine_id, bundle, log_path, machine_id, enter)
        log.info("provider.gvisor_started", machine_id=machine_id, pid=pid,
                 platform=runsc.platform)  # fmt: skip
        return f"local:{pid}"

    async def pooled_gvisor(
        self, slot: str, home: Path
    ) -> tuple[gvisor.Runsc, int, int, list[str]]:
        """A pooled gvisor sandbox's runsc, uid (``<slot dir>/uid``), root's host uid
        (``<slot dir>/root-uid``: a claim moves both to the machine) and cgroup entry (the
        slot's own, with the platform's default limits until a claim applies its instance's),
        as ``pooled_argv`` for a bwrap one; NotSupported where gvisor machines cannot run."""
        runsc = self.gvisor_runsc()
        uid = await self._gvisor_uid(home.parent)
        root = await asyncio.to_thread(self._gvisor_root_uid, home.parent, uid, False)
        code_store(home.parent).mkdir(mode=0o755, exist_ok=True)
        return runsc, uid, root, await self._limited(slot, [], self._default_limits, on_gvisor=True)

    async def _gvisor_uid(self, machine_dir: Path) -> int:
        """The uid of a gvisor machine (or pool slot) in ``machine_dir``, its home given to it;
        NotSupported where there are no uids to give."""
        uid = await asyncio.to_thread(self._own_uid_in, machine_dir)
        if uid is None:
            raise NotSupported("a gvisor machine runs as a uid of its own, and this host has "
                               "none (FLEET_SANDBOX_UIDS)", data={"runtime": "gvisor"})  # fmt: skip
        return uid

    def gvisor_runsc(self) -> gvisor.Runsc:
        """What runs gvisor machines here; NotSupported, named, where nothing does or where
        they could not reach NATS (on the host's loopback, with no gateway to map it to)."""
        runsc = self._gvisor_runsc()
        gvisor.machine_nats_url(self._nats_url)
        return runsc

    def _gvisor_root_uid(self, machine_dir: Path, uid: int, as_root: bool) -> int:
        """The host uid of the machine's root: its own uid when its user is root (a
        devcontainer's ``remoteUser: root``: root inside is then that uid alone), else one of
        its own beside it (``ROOT_UID_FILE``)."""
        assert self._uids is not None  # the machine's uid was allocated from them
        path = machine_dir / ROOT_UID_FILE
        if as_root:
            replace_file(path, str(uid))
            return uid
        if read_uid(path) == uid:  # never two ids inside on one host uid
            path.unlink()
        return allocate_uid(path, self._root, self._uids)

    async def _gvisor_image(self, machine_id: str, place: Placement | None, uid: int,
                            root: int) -> ImageRoot | None:  # fmt: skip
        """The environment's image a gvisor machine runs (unpacked once, mounted as its root:
        providers/gvisor/image.py), or None: the host's system."""
        if place is None or place.image is None or self._engine is None:
            return None
        lower = await self._image_roots.ensure(self._engine(), place.image)
        merged = await asyncio.to_thread(mount_root, self.machine_dir(machine_id), lower, root,
                                         uid, place.user)  # fmt: skip
        loader = await asyncio.to_thread(readable_loader, self._data_dir)
        return ImageRoot(merged, loader, place.user, root == uid)

    def _gvisor_runsc(self) -> gvisor.Runsc:
        why = None if self._runsc is None else gvisor.probe(self._runsc.binary)
        if self._runsc is None or why is not None or not self.sandbox:
            raise NotSupported(
                f"this host's local provider does not run gvisor machines: {why or 'no runsc'}",
                data={"runtime": "gvisor"},
            )
        return self._runsc

    async def exec_as_root(self, machine_id: str, params: ExecCommandParams) -> ExecCommandResult:
        """Root of the machine's own kernel (gvisor machines only; runsc exec --user 0)."""
        if not gvisor.is_gvisor(self.machine_dir(machine_id)):
            raise NotSupported(f"machine {machine_id} is not a gvisor machine: no root in it",
                               data={"runtime": "namespaces", "user": "root"})  # fmt: skip
        runsc = self._gvisor_runsc()
        return await gvisor.exec_as_root(runsc, self.machine_dir(machine_id), machine_id, params)

    async def pause(self, machine_id: str) -> int:
        """A gvisor machine checkpointed to disk, its sandbox gone (providers/gvisor/pause.py);
        the image's size."""
        machine_dir = self.machine_dir(machine_id)
        if not gvisor.is_gvisor(machine_dir):
            raise NotSupported(f"machine {machine_id} runs the namespaces runtime: only a gvisor "
                               "machine can be paused", data={"runtime": "namespaces"})  # fmt: skip
        runsc = self._gvisor_runsc()
        ports = {port for _, port in nats_servers(self._nats_url)}
        size = await gvisor.pause_sandbox(runsc, machine_dir, machine_id, ports)
        # Its own namespace is kept for its resume, with its pasta; any other (a pooled
        # sandbox's was its slot's) ends.
        kept = await asyncio.to_thread(gvisor.held_netns, machine_dir, machine_id)
        named = owners(machine_dir, machine_id)
        await asyncio.to_thread(stop_pasta, *(o for o in named if kept is None or o != machine_id))
        log.info("provider.gvisor_paused", machine_id=machine_id, bytes=size,
                 kept_netns=kept is not None)  # fmt: skip
        return size

    async def resume(self, machine_id: str) -> None:
        """A paused gvisor machine restored from its image."""
        runsc = self._gvisor_runsc()
        enter = await self._limited(machine_id, [], on_gvisor=True)
        ports = {port for _, port in nats_servers(self._nats_url)}
        await gvisor.resume_sandbox(runsc, self.machine_dir(machine_id), machine_id, enter,
                                          self._netns_ready, nats_ports=ports)  # fmt: skip

    async def _stop_gvisor(self, machine_id: str) -> bool:
        runsc = self._runsc or gvisor.Runsc("runsc", "ptrace", self._data_dir)
        machine_dir = self.machine_dir(machine_id)
        named = tuple(owners(machine_dir, machine_id))
        return await asyncio.to_thread(gvisor.stop_machine, runsc, machine_dir, machine_id,
                                       STOP_GRACE_S, named)  # fmt: skip

    async def restart(self, machine_id: str) -> bool:
        """Restart the machine's daemon in place (its processes stay); False if not running."""
        if gvisor.is_gvisor(self.machine_dir(machine_id)):
            runsc = self._runsc or gvisor.Runsc("runsc", "ptrace", self._data_dir)
            return await asyncio.to_thread(gvisor.restart_daemon, runsc,
                                           self.machine_dir(machine_id), machine_id)  # fmt: skip
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
            await self._stop_gvisor(machine_id)
        await asyncio.to_thread(stop_local, machine_dir, machine_id)
        self._reap()
        await asyncio.to_thread(remove_overlay, machine_dir)  # its writes outside the home
        await asyncio.to_thread(remove_root, machine_dir)  # a gvisor machine's of an image
        await asyncio.to_thread(remove_files, machine_dir)
        log.info("provider.local_removed", machine_id=machine_id)

    async def stop(self, machine_id: str) -> bool:
        """As ``stop``: the home (and the machine's uid) stay in its directory, and a stop
        never removes them here; ``start`` runs the same machine in them again."""
        if gvisor.is_gvisor(self.machine_dir(machine_id)):
            return await self._stop_gvisor(machine_id)
        was_up = await asyncio.to_thread(stop_local, self.machine_dir(machine_id), machine_id)
        self._reap()
        await asyncio.to_thread(unmount_overlay, self.machine_dir(machine_id))
        return was_up

    def _reap(self) -> None:
        """Collect exit statuses of daemons this process started (no zombies)."""
        for mid, pid in list(self._children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                code = os.waitstatus_to_exitcode(status)  # -9: SIGKILLed
                log.info("provider.local_exited", machine_id=mid, pid=pid, code=code)
                record_exit(self.machine_dir(mid), pid, code=code)
                del self._children[mid]


def spawn_detached(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    what: str,
    fds: Mapping[int, int] | None = None,
) -> int:
    """Start a process in its own session, output appended to ``log_path``, each descriptor of
    ``fds`` (target: source) passed at its target number; its pid.

    posix_spawn, not Popen: a machine's process must outlive the provisioner that started it
    (as a cloud machine would), so nothing here owns it; we only reap it if it exits first.
    """
    out = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    # Copies above every target first: a source numbered as another's target is not clobbered
    # by the dup2s (and dup2 onto itself would keep close-on-exec).
    high = {target: fcntl.fcntl(src, fcntl.F_DUPFD_CLOEXEC, 64) for target, src in
            (fds or {}).items()}  # fmt: skip
    try:
        return os.posix_spawn(
            argv[0], argv, env, setsid=True,
            file_actions=[
                *((os.POSIX_SPAWN_DUP2, src, target) for target, src in high.items()),
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path), out, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )  # fmt: skip
    except OSError as exc:
        raise ProviderError(f"cannot start {what}: {exc}") from None
    finally:
        for fd in high.values():
            os.close(fd)


def remove_files(machine_dir: Path) -> None:
    """The machine's own files: by descriptor, never following a link it made nor crossing a
    mount (``scratch.remove_tree``)."""
    home = machine_dir / "home"
    if home.is_dir() and not home.is_symlink() and is_subvolume(home):
        remove_home(home)  # the subvolume as one: nothing in it is walked
    else:
        remove_tree(home)
    remove_tree(code_store(machine_dir))


def code_store(machine_dir: Path) -> Path:
    """A machine's code store (base/codestore.py): beside its home, the platform's alone."""
    return machine_dir / "code"


def write_pid(machine_dir: Path, pid: int) -> None:
    replace_file(machine_dir / "daemon.pid", str(pid))


def running_pid(machine_dir: Path, machine_id: str) -> int | None:
    """The pid of this machine's root process (bwrap, or the supervisor) if it is alive and
    really is this machine's; else a daemon of an older fleetd that holds the home's lock;
    else a root started for this machine whose pid was never recorded."""
    markers = _markers(machine_dir, machine_id)
    # The lock is in the machine's home: read only when needed, and never by path (holder_pid).
    for find in (_spawned_pid, lambda d: holder_pid(d / "home")):
        if (pid := find(machine_dir)) is not None and _is_root_of(pid, markers):
            return pid
    # A provisioner SIGKILLed between starting a machine and writing daemon.pid leaves a
    # machine nobody recorded: found by the machine id in its environment, and adopted, so
    # that a redelivered machine.created does not start a second one (found under CPU load).
    roots = machine_roots(machine_dir, machine_id)
    if roots:
        write_pid(machine_dir, roots[0])
        return roots[0]
    return None


#: In a machine's directory when it came from the warm pool: the pool slot its root was
#: started as (``FLEET_POOL_SLOT`` in the root's environment; it had no machine id then).
POOL_SLOT_FILE = "pool-slot"
#: In a machine's directory once a pooled root was told it is this machine: the slot it was.
IDENTIFIED_FILE = "identified"


def _markers(machine_dir: Path, machine_id: str) -> list[tuple[str, str]]:
    """What the environment of this machine's root says: its machine id, or its pool slot."""
    found = [("FLEET_MACHINE_ID", machine_id)]
    with contextlib.suppress(OSError):
        found.append((POOL_SLOT_VAR, (machine_dir / POOL_SLOT_FILE).read_text().strip()))
    return found


def machine_roots(machine_dir: Path, machine_id: str) -> list[int]:
    """Every live root process started for this machine (normally one)."""
    return sorted(
        {
            p
            for name, value in _markers(machine_dir, machine_id)
            for p in env_roots(name, value)
            if procinfo.state(p) not in ("Z", "X", None)
        }
    )


def machine_processes(machine_dir: Path, machine_id: str) -> list[int]:
    """Every live process started for this machine (its id, or its pool slot, in the
    environment): bwrap, its init, the supervisor, the daemon."""
    return procinfo.members(_markers(machine_dir, machine_id))


def _supervisor_of(root: int) -> int | None:
    """The supervisor's host pid: the root itself, or inside bwrap two levels down. None when
    a sandbox's supervisor has already ended (the machine is going: bwrap follows it, and a
    signal to bwrap itself would only turn its clean exit into a SIGTERM)."""
    if "bwrap" in Path(f"/proc/{root}/comm").read_text(errors="replace"):
        return supervisor_pid(root)
    return root


def restart_local(machine_dir: Path, machine_id: str) -> bool:
    """SIGHUP to the supervisor: it restarts the daemon, which leaves its processes running."""
    pid = running_pid(machine_dir, machine_id)
    if pid is None:
        return False
    supervisor = _supervisor_of(pid)
    if supervisor is None:  # the machine is ending: nothing to restart
        return False
    with contextlib.suppress(OSError):
        os.kill(supervisor, signal.SIGHUP)
        return True
    return False


def _spawned_pid(machine_dir: Path) -> int | None:
    try:
        return int((machine_dir / "daemon.pid").read_text())
    except (OSError, ValueError):
        return None


def _is_root_of(pid: int, markers: list[tuple[str, str]]) -> bool:
    # A reused pid belongs to some other process: only trust a process started for this machine.
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(f"{k}={v}".encode() in environ for k, v in markers) and pid_alive(pid)


#: How long a stopped daemon gets before it is SIGKILLed: more than its own stop may take
#: (up to 10 s for the calls in flight, then 5 s for its processes' SIGTERM grace), so only a
#: stuck daemon is killed; one that stops cleanly takes a fraction of a second.
STOP_GRACE_S = 20.0


def stop_local(
    machine_dir: Path, machine_id: str, grace_s: float = STOP_GRACE_S, killed_as: str = "SIGKILL"
) -> bool:
    """SIGTERM the daemon's process group, SIGKILL it after ``grace_s`` (recorded as
    ``killed_as``); then any other root started for this machine (a start whose pid was never
    recorded). True if one was up."""
    pid = running_pid(machine_dir, machine_id)
    if pid is not None:
        # The others before the kill: a dying sandbox's init, its bwrap gone, would look like
        # a root of its own.
        others = [root for root in machine_roots(machine_dir, machine_id) if root != pid]
        with _sandbox_namespaces((pid, *others)) as namespaces:
            for root in (pid, *others):
                _stop_root(machine_dir, machine_id, root, grace_s, killed_as)
            _await_every_process(machine_id, _markers(machine_dir, machine_id), namespaces)
    # Its cgroup too, if it had one (also when it had ended on its own: an archive's stop);
    # a machine from the warm pool kept its slot's.
    named = owners(machine_dir, machine_id)
    for owner in named:
        MachineCgroup(owner).remove()
    stop_pasta(*named)  # its network's way out (the namespace ended with the sandbox)
    return pid is not None


def _sandbox_namespaces(roots: tuple[int, ...]) -> contextlib.AbstractContextManager[set[int]]:
    """The pid namespaces of these roots' sandboxes (bwrap's child is the namespace's init),
    held while the stop waits for their processes: none for a root without a sandbox, whose
    children share the host's."""
    return procinfo.held_pid_namespaces(
        (root, child) for root in roots for child in sandbox_root_children(root)
    )


#: How long a stop waits, after the roots ended, for the rest of the machine's processes: the
#: kernel ends those of a sandbox's namespace after bwrap has reported its end (for a moment,
#: one may be in D state); only a process stuck in the kernel takes longer.
EXIT_WAIT_S = 10.0


def _await_every_process(
    machine_id: str, markers: list[tuple[str, str]], namespaces: set[int]
) -> None:
    """Returns once no process of the machine is left (SIGKILLed, were any to outlive the
    kill of its roots): a stopped machine runs nothing, not "nothing soon"."""
    left: list[int] = []

    def gone() -> bool:
        left[:] = procinfo.members(markers, namespaces)
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        return not left

    if not wait_until(gone, within_s=EXIT_WAIT_S, every_s=0.02):
        log.error("provider.local_processes_left", machine_id=machine_id, pids=left)


def owners(machine_dir: Path, machine_id: str) -> list[str]:
    """The names the machine's cgroup and pasta were made under: its id, and its pool slot
    when it came from the warm pool (it kept the slot's)."""
    return [value for _, value in _markers(machine_dir, machine_id)]


def _stop_root(
    machine_dir: Path, machine_id: str, pid: int, grace_s: float, killed_as: str
) -> None:
    start = time.monotonic()
    supervisor = None
    with contextlib.suppress(OSError):  # the supervisor stops the daemon, then itself
        if (supervisor := _supervisor_of(pid)) is not None:
            os.kill(supervisor, signal.SIGTERM)
    # No supervisor: the sandbox is ending, or it never got one (its provisioner died between
    # bwrap's start and the network's hand-over, and bwrap waits on a pipe nobody writes): a
    # short wait, then the kill ends no daemon, and is recorded as such.
    grace = grace_s if supervisor is not None else min(grace_s, 1.0)
    wait_until(lambda: not pid_alive(pid), within_s=start + grace - time.monotonic(),
               every_s=0.05)  # fmt: skip
    killed = pid_alive(pid)
    # The whole group: bwrap, its init (whose end ends every process of the machine's pid
    # namespace, setsid or not), the supervisor and the daemon.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # and whatever is left of its process group
    took_s = round(time.monotonic() - start, 3)
    how = "SIGTERM" if not killed else killed_as if supervisor is not None else NO_DAEMON
    if killed and killed_as != "SIGKILL":  # the caller knows better why it had to be killed
        how = killed_as
    record_exit(machine_dir, pid, endedBy=how, tookS=took_s)
    log.info("provider.local_stopped", machine_id=machine_id, pid=pid, sigkilled=killed)


#: In a machine's directory when its home was copied from another's: how (``HomeCopy``).
HOME_COPY_FILE = "home-copy.json"

NO_DAEMON = "SIGKILL-no-daemon"
CUT_OFF = "SIGKILL-cut-off"
NEVER_IDENTIFIED = "SIGKILL-never-identified"

#: One JSON line per daemon this provider saw end: ``code``, its exit code, for the daemons it
#: started and reaped (-9: SIGKILLed); ``endedBy`` for those it stopped (``SIGTERM``: it ended in
#: its grace time; ``SIGKILL``: it had to be killed; ``SIGKILL-no-daemon``: a sandbox that never
#: got its supervisor, so no daemon was killed; ``SIGKILL-cut-off``: a sandbox whose provisioner
#: died before giving it its network, so its daemon never served; ``SIGKILL-never-identified``:
#: a pooled sandbox whose claimer died before telling it which machine it is), with ``tookS``.
EXITS_FILE = "daemon.exits"


def record_exit(machine_dir: Path, pid: int, **what: object) -> None:
    line = json.dumps({"pid": pid, **what, "at": time.time()})
    with contextlib.suppress(OSError), (machine_dir / EXITS_FILE).open("a") as out:
        out.write(line + "\n")


def exit_records(data_dir: Path) -> list[dict[str, object]]:
    """Every exit record under ``data_dir`` (each with its ``machineId``)."""
    root = data_dir.resolve() / "machines"
    found: list[dict[str, object]] = []
    for path in sorted(root.glob(f"*/{EXITS_FILE}")) if root.is_dir() else []:
        for line in path.read_text().splitlines():
            found.append({**json.loads(line), "machineId": path.parent.name})
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


#: How many gvisor machines `stop_all_local` stops at a time.
_STOP_THREADS = 16


def stop_all_local(data_dir: Path, grace_s: float = STOP_GRACE_S) -> int:
    """Stop every local machine under ``data_dir``; returns how many were running. All are
    sent SIGTERM first, then waited for on one shared deadline: n machines take about as long
    as the slowest, not the sum of their grace times, so a loaded host can give each more."""
    root = data_dir.resolve() / "machines"
    if not root.is_dir():
        return 0
    dirs = [d for d in root.iterdir() if d.is_dir()]
    runsc = gvisor.Runsc("runsc", "ptrace", data_dir.resolve())
    on_gvisor = [d for d in dirs if gvisor.is_gvisor(d)]
    dirs = [d for d in dirs if d not in on_gvisor]
    # Together, as the others are: each waits on its own sandbox (up to grace_s when stuck).
    with concurrent.futures.ThreadPoolExecutor(min(len(on_gvisor), _STOP_THREADS) or 1) as pool:
        # With its pool slot's names: a machine from the warm pool runs on its slot's pasta.
        gvisor_up = sum(pool.map(lambda d: gvisor.stop_machine(
            runsc, d, d.name, grace_s, owners=tuple(owners(d, d.name))), on_gvisor))  # fmt: skip
    for d in dirs:
        pid = running_pid(d, d.name)
        with contextlib.suppress(OSError):  # a second SIGTERM from stop_local is harmless
            if pid is not None and (supervisor := _supervisor_of(pid)) is not None:
                os.kill(supervisor, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    ended = sum(stop_local(d, d.name, grace_s=max(0.0, deadline - time.monotonic())) for d in dirs)
    for d in dirs:  # an image machine's overlay: mounted again at its next start
        unmount_overlay(d)
    return ended + gvisor_up


def _bytes_of(top: Path) -> int:
    try:
        return disk_bytes(top)
    except FileNotFoundError:
        return 0
