"""What every part of the local provider shares: this host's settings for its machines (made
once, by the provider's constructor, and handed to each part), where a machine's files are, the
environment its root starts with, its uid and its cgroup."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import structlog

from base.atomic import replace_file
from base.codestore import CODE_MOUNT, STORE_VAR
from base.version import git_sha
from controlplane.policy import Limits, Placement, PlacementOf, on_host
from providers.disk_walk import WalkBound
from providers.local.image_rootfs import ImageRoots
from providers.local.processes import INHERITED_ENV, code_store
from providers.sandbox import (
    SANDBOX_LOADER,
    MachineCgroup,
    allocate_uid,
    docker_default_bpf,
    give_home,
    loopback_ports,
)

log = structlog.get_logger(__name__)

#: In a machine's directory: the uid its home was last given to, and that home's device and
#: inode (another home there, a copy made again, is given again).
HOME_GIVEN = "home-given"


@dataclass(frozen=True, kw_only=True)
class LocalHost:
    """This host's local machines: the settings the provider was made with, as its parts use
    them (``of`` derives them from the provider's arguments)."""

    data_dir: Path
    nats_url: str
    environ: Mapping[str, str]
    code_repo: Path
    #: False only when the operator said so (fleet up --no-sandbox): not isolated.
    sandbox: bool
    shared: tuple[Path, ...]
    #: A sandboxed machine's limits (its cgroup, providers/sandbox/cgroup.py); None: no limits.
    placement: PlacementOf | None
    #: Sandboxed machines' own uids (providers/sandbox/machine_uid.py); None: the platform's.
    uids: tuple[int, int] | None
    #: A pooled machine's limits before its claim (then its instance's).
    default_limits: Limits
    #: A sandboxed machine's network is its own (providers/sandbox/netns.py) unless the
    #: operator said otherwise (FLEET_SANDBOX_NETWORK=host); the host's loopback ports it
    #: reaches: NATS's, and those forwarded (FLEET_SANDBOX_LOOPBACK_PORTS).
    own_network: bool
    forwarded: list[int]
    #: Homes are btrfs subvolumes: a fork is a snapshot (providers/local/homes.py).
    cow: bool
    #: The Docker engine environments' images are unpacked from (None: none).
    engine: Callable[[], aiodocker.Docker] | None
    image_roots: ImageRoots
    #: Docker's default syscall filter, compiled once (providers/sandbox/seccomp.py).
    seccomp: bytes
    #: How much of a home (or a copy) one measurement of its disk may walk.
    disk_walk: WalkBound

    @classmethod
    def of(
        cls, *, data_dir: Path, nats_url: str, environ: Mapping[str, str], code_repo: Path,
        sandbox: bool, shared: tuple[Path, ...], placement: PlacementOf | None,
        uids: tuple[int, int] | None, default_limits: Limits | None, own_network: bool,
        forwarded: tuple[int, ...], cow: bool, engine: Callable[[], aiodocker.Docker] | None,
        disk_walk: WalkBound,
    ) -> LocalHost:  # fmt: skip
        data_dir = data_dir.resolve()
        return cls(
            data_dir=data_dir, nats_url=nats_url, environ=environ, code_repo=code_repo,
            sandbox=sandbox, shared=shared, placement=placement,
            uids=uids if sandbox else None, default_limits=default_limits or Limits(),
            own_network=own_network and sandbox,
            forwarded=sorted({*loopback_ports(nats_url), *forwarded}), cow=cow, engine=engine,
            image_roots=ImageRoots(data_dir), seccomp=docker_default_bpf() if sandbox else b"",
            disk_walk=disk_walk,
        )  # fmt: skip

    @property
    def machines(self) -> Path:
        return self.data_dir / "machines"

    def machine_dir(self, machine_id: str) -> Path:
        return self.machines / machine_id

    def home(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "home"

    async def place(self, machine_id: str) -> Placement | None:
        """Where and how the machine runs (its runtime, image, limits); None: no placement."""
        return None if self.placement is None else await self.placement(machine_id)

    def machine_env(self, home: Path, **fleet: str) -> dict[str, str]:
        """A machine root's environment: what it inherits, its home, NATS, and ``fleet``."""
        env = {k: v for k, v in self.environ.items() if k in INHERITED_ENV}
        env |= {"HOME": str(home), "FLEET_HOME": str(home), "FLEET_NATS_URL": self.nats_url}
        env[STORE_VAR] = CODE_MOUNT if self.sandbox else str(code_store(home.parent))
        if self.sandbox:
            env["FLEET_NODUMP_LOADER"] = SANDBOX_LOADER
        if self.sandbox and not env.get("FLEET_GIT_SHA"):
            # The checkout's .git is not mounted in the sandbox: say which code this is.
            env["FLEET_GIT_SHA"] = git_sha() or ""
        return env | fleet

    def own_uid_in(self, machine_dir: Path) -> int | None:
        """The uid recorded in ``machine_dir`` (a machine's, or a pool slot's: its machine's at
        claim), allocated if new; ``home`` and ``daemon.log`` there given to it. A home is
        walked to be given once (``HOME_GIVEN``: made, copied, or its uid changed), never at
        each start: a machine makes its home as large as it likes, and the walk is root's."""
        if self.uids is None:
            return None
        uid = allocate_uid(machine_dir / "uid", self.machines, self.uids)
        home, given = machine_dir / "home", machine_dir / HOME_GIVEN
        st = os.lstat(home)
        mark = f"{uid} {st.st_dev} {st.st_ino}"
        if not given.is_file() or given.read_text() != mark:
            give_home(home, uid)
            replace_file(given, mark)
        # Its log too: the daemon reads it back (daemon.log) through its own stdout.
        log_path = machine_dir / "daemon.log"
        log_path.touch(mode=0o600)
        os.chown(log_path, uid, uid)
        return uid

    async def limited(
        self, machine_id: str, argv: list[str], limits: Limits | None = None, *,
        on_gvisor: bool = False,
    ) -> list[str]:  # fmt: skip
        """``argv`` started in the machine's own cgroup with its limits (a gvisor sandbox's as
        ``on_host`` counts them), where cgroups can be made (fleet up said so loudly where
        not)."""
        if not self.sandbox or self.placement is None:
            return argv
        if limits is None:
            limits = (await self.placement(machine_id)).limits
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
