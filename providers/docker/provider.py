"""Provider ``docker``: a machine is a container on a Docker engine (DOCKER_HOST's, else the
local one), driven with aiodocker.

Each machine: container ``fleet-<machineId>`` from the machine image
(``providers/docker/image.py``), labelled ``fleet.machine``/``fleet.instance``, its home on a volume
of its own (``fleet-<machineId>-home``), memory/CPU/pids limits, not privileged, every capability
dropped, ``no-new-privileges``, running as uid 1000 (or, in an environment's image, its
devcontainer's ``remoteUser``: environments/users.py). Its first process is the daemon's supervisor
(``daemon.supervise``: a dead daemon is back at once, orphans are reaped; the container's
restart policy brings back a dead supervisor), started through an execute-only loader so that
neither it nor the daemon is readable by the machine's commands (daemon/supervision/nodump.py). It
sits
on a user-defined bridge network with no traffic between containers; of the platform it
reaches only NATS, which listens on that network's gateway address (valkey and the gateway
stay on 127.0.0.1, which in a container is the container's own loopback).

A machine claimed from the warm pool (``providers/docker/pool.py``) is found by its name like any
other (the claim renames it); its labels are the pool's and its home volume the pool's
(``home_volumes`` finds it from the container).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiodocker
import structlog

from base.codestore import CODE_MOUNT, STORE_VAR
from base.docker_engine import engine_is_local
from base.loader import withheld
from base.platform_code import resolve_sha
from base.poolwire import POOL_CLAIMED_LOG, POOL_UP_LOG
from base.tokenfd import TOKEN_FILE_VAR
from base.version import git_sha
from contracts.bus.events import HomeCopy
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import ProviderError
from contracts.models import GvisorPlatform
from controlplane.policy import Limits, Placement, PlacementOf
from providers.disk_walk import WalkBound, home_disk
from providers.docker.code import (
    TOKEN_FILE,
    code_volume,
    install as install_store,
    platform_mounts,
    secret_volume,
    store_archive,
    token_archive,
)
from providers.docker.copy import HomeCopier, layer_ref
from providers.docker.fork import DockerForks, with_layer
from providers.docker.gvisor import ROOT, make_gvisor, refuse_root, with_engine_runtime
from providers.docker.home import (
    home_ref_name,
    home_volumes,
    remember_home,
    remove_home,
    remove_volume,
    stopped_home,
)
from providers.docker.image import MACHINE_HOME, MACHINE_UID, ImageBuilder, Say
from providers.docker.names import (
    LABEL_ENVIRONMENT,
    LABEL_INSTANCE,
    LABEL_MACHINE,
    LABEL_POOL,
    LABEL_STACK,
    container_name,
    volume_name,
)
from providers.docker.netns import container_pid
from providers.docker.runtime import Runtime, RuntimeVolumes, give_new_home
from providers.docker.users import Uids, name_in_image, user_files
from providers.machine_usage import Usage, docker_usage
from providers.sandbox import RESOLVER

log = structlog.get_logger(__name__)

#: Environment variables a container's daemon gets from the platform (as the local provider's).
INHERITED_ENV = ("FLEET_ENV", "FLEET_LOG_LEVEL", "FLEET_EXEC_OUTPUT_CAP", "FLEET_HEARTBEAT_S")


class DockerProvider:
    name = "docker"
    #: Runs an environment's image (Placement.image), the platform's runtime brought in.
    runs_images = True

    def __init__(
        self,
        *,
        nats_url: str,
        network: str,
        base_image: str,
        work_dir: Path,
        code_repo: Path,
        placement: PlacementOf | None = None,
        environ: Mapping[str, str] | None = None,
        keep_volumes: bool = False,
        say: Say | None = None,
        stack: str = "",
        default_limits: Limits | None = None,
        engine_url: str | None = None,
        gvisor_platform: GvisorPlatform = "ptrace",
        disk_walk: WalkBound | None = None,
        uids: tuple[int, int] | None = None,
    ) -> None:
        self._nats_url = nats_url
        #: Each machine's own host uid is drawn from these (None: the image's user, shared).
        self._uid_range = uids
        self._uids: Uids | None = None
        #: How much of a home a measurement of its disk may walk (providers/disk_walk.py).
        self._walk = disk_walk or WalkBound()
        #: The engine's address (``tcp://host:port``, ``unix:///path``); None: aiodocker's
        #: rule (DOCKER_HOST, else the docker context's, else the local socket).
        self._engine_url = engine_url
        #: The platform the engine's runsc must run gvisor machines on (providers/docker/gvisor.py).
        self.gvisor_platform: GvisorPlatform = gvisor_platform
        self.network = network
        self._base_image = base_image
        self._work_dir = work_dir
        self._code_repo = code_repo
        self._placement = placement
        #: A pooled container's, until its claim gives it its instance's (the platform's).
        self.default_limits = default_limits or Limits()
        self._environ = environ or {}
        self.keep_volumes = keep_volumes
        self.stack = stack
        self._say = say or (lambda text: log.info("provider.docker_image", step=text))
        self._docker: aiodocker.Docker | None = None
        self._builder: ImageBuilder | None = None
        self._runtimes: RuntimeVolumes | None = None
        self._forks: DockerForks | None = None

    async def __aenter__(self) -> DockerProvider:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    @property
    def docker(self) -> aiodocker.Docker:
        """The engine's client, made on first use (it needs a running event loop)."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(self._engine_url)
            # How aiodocker says it found no engine to talk to (no DOCKER_HOST, context or
            # socket): an assert, a ValueError under -O.
            except (AssertionError, ValueError):
                raise ProviderError("no Docker engine: DOCKER_HOST is not set and there is no "
                                    "Docker socket here (apt-get install docker.io, or set "
                                    "DOCKER_HOST)") from None  # fmt: skip
        return self._docker

    async def image(self) -> str:
        if self._builder is None:
            self._builder = ImageBuilder(self.docker, self._base_image, self._work_dir, self._say)
        return await self._builder.ensure()

    async def runtime(self) -> Runtime:
        """The platform's runtime for machines of other images (providers/docker/runtime.py)."""
        if self._runtimes is None:
            self._runtimes = RuntimeVolumes(self.docker)
        return await self._runtimes.ensure(await self.image())

    @property
    def uids(self) -> Uids:
        """Machines' own uids on this engine (providers/docker/users.py)."""
        if self._uids is None:
            self._uids = Uids(self.docker, self._uid_range)
        return self._uids

    @property
    def forks(self) -> DockerForks:
        """Forks and snapshots of this engine's machines (providers/docker/fork.py)."""
        if self._forks is None:
            copier = HomeCopier(self.docker, self.image, {LABEL_STACK: self.stack})
            self._forks = DockerForks(copier, self._container)
        return self._forks

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        return await self.forks.clone_home(source_id, machine_id)

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        return await self.forks.take_snapshot(machine_id, snapshot_id)

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        return await self.forks.drop_snapshot(snapshot_id)

    async def placement_of(self, machine_id: str) -> Placement:
        """The machine's instance and limits."""
        if self._placement is None:
            return Placement("", self.default_limits)
        return await self._placement(machine_id)

    async def _container(self, machine_id: str) -> aiodocker.containers.DockerContainer | None:
        try:
            c = await self.docker.containers.get(container_name(machine_id))
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise ProviderError(f"docker: {exc.message}") from None
        return c

    async def start(self, machine_id: str, token: str) -> str:
        existing = await self._container(machine_id)
        volume, hostname = volume_name(machine_id), ""
        if existing is not None:  # a redelivered machine.created, or a resume
            running = existing["State"]["Running"] and self._current(existing)
            if running and not await self._unclaimed(existing):
                await self.forks.copier.pauses.resume_stale(existing)
                return f"docker:{existing.id[:12]}"
            if self._current(existing) and LABEL_ENVIRONMENT in existing["Config"]["Labels"]:
                return await self._start_kept(existing, token)
            # Stopped (fleet up stopped it), made for another NATS address (an embedded NATS
            # gets a new port each time) or claimed from the pool and never told who it is:
            # made again from today's image and settings, with its home volume.
            # The same machine: its home, and its hostname (a claimed one's is its pool slot's).
            volume = next(iter(home_volumes(existing)), volume)
            hostname = existing["Config"]["Hostname"]
            await existing.delete(force=True)
            log.info("provider.docker_recreating", machine_id=machine_id)
        else:  # stopped (machines.stop): its home is where it was
            volume = await stopped_home(self.docker, machine_id) or volume
        image = await self.image()
        gateway = await ensure_network(self.docker, self.network)
        self.check_nats_reachable(gateway)
        place = await self.placement_of(machine_id)
        uid, new = await self.uids.home(volume, {LABEL_MACHINE: machine_id,
                                                 LABEL_STACK: self.stack})  # fmt: skip
        user = run_as(place, uid)
        config = self.container_config(machine_id, image, place, volume, hostname, user)
        # Made by a copy of a machine with a layer (a fork, or from a snapshot): it runs that
        # layer, its source's writes over the image its source ran.
        if (layer := await self.forks.layer(machine_id)) is not None:
            ref = layer_ref(machine_id)
            with_runtime(config, ref, await self.runtime(), await self.image_env(ref))
            with_layer(config, layer)
        elif place.image is not None:
            env = await self.image_env(place.image)
            with_runtime(config, place.image, await self.runtime(), env)
        if place.runtime == "gvisor":
            await make_gvisor(self.docker, self.gvisor_platform, machine_id, config, place, user)
        try:
            if new:  # the machine image's home, uid 1000's: its user's
                await give_new_home(self.docker, image, volume, user)
            # The token: a file the supervisor empties as it reads it, never the container's env.
            of_image = LABEL_ENVIRONMENT in config["Labels"]  # its own /etc, not the platform's
            secret = token_archive(token, token_owner(place, user), named(uid, of_image))
            await install_store(self.docker, image, secret_volume(volume), secret)
            c = await self.docker.containers.create(config, name=container_name(machine_id))
            if uid is not None and of_image:
                await name_in_image(c, place.user, uid)
            await c.start()
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot start {machine_id}: {exc.message}") from None
        log.info("provider.docker_started", machine_id=machine_id, container=c.id[:12])
        return f"docker:{c.id[:12]}"

    async def _start_kept(self, c: aiodocker.containers.DockerContainer, token: str) -> str:
        """A stopped machine of an environment's image: its own container again, with what it
        wrote outside its home; the new token in its secret volume first."""
        homes = home_volumes(c)
        if not homes:
            raise ProviderError(f"docker: container {c.id[:12]} has no home volume")
        owner = user_of(c["Config"]["User"])
        try:
            await install_store(self.docker, await self.image(), secret_volume(homes[0]),
                                token_archive(token, owner))  # fmt: skip
            if c["State"].get("Restarting"):  # its engine started it, and it found no token
                await c.restart()
            else:
                await c.start()
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot start {c.id[:12]}: {exc.message}") from None
        log.info("provider.docker_started_kept", container=c.id[:12])
        return f"docker:{c.id[:12]}"

    async def image_env(self, image: str) -> list[str]:
        """The environment ``image``'s config gives its containers (``NAME=value`` lines)."""
        try:
            info = await self.docker.images.inspect(image)
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot inspect {image}: {exc.message}") from None
        return list((info.get("Config") or {}).get("Env") or [])

    def _current(self, c: aiodocker.containers.DockerContainer) -> bool:
        return f"FLEET_NATS_URL={self._nats_url}" in (c["Config"]["Env"] or [])

    async def _unclaimed(self, c: aiodocker.containers.DockerContainer) -> bool:
        """A pool container renamed by a claim whose identity never came (its provisioner
        ended in between): its supervisor still waits (its log says so)."""
        if not (c["Config"]["Labels"] or {}).get(LABEL_POOL):  # a fork's layer blanks it
            return False
        try:
            said = "".join(await c.log(stderr=True, tail="50"))
        except aiodocker.DockerError:
            return True  # cannot tell: made again, which is always right
        # A waiting one has logged a few lines, pool_up last; a claimed one, pool_claimed and
        # then its daemon's lines (which may push both out of the tail).
        return POOL_UP_LOG in said and POOL_CLAIMED_LOG not in said

    def check_nats_reachable(self, gateway: str) -> None:
        hosts = {urlsplit(u.strip()).hostname for u in self._nats_url.split(",")}
        if hosts <= {"127.0.0.1", "localhost", "::1"}:
            raise ProviderError(
                f"a container cannot reach NATS at {self._nats_url} (the host's loopback): run "
                f"fleet up --provider docker, which puts NATS on the machines' network ({gateway})"
            )

    def container_config(
        self, machine_id: str, image: str, place: Placement, volume: str = "", hostname: str = "",
        user: tuple[int, int] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        env = {"FLEET_MACHINE_ID": machine_id, TOKEN_FILE_VAR: TOKEN_FILE}
        labels = {LABEL_MACHINE: machine_id, LABEL_INSTANCE: place.instance_id}
        volume = volume or volume_name(machine_id)
        hostname = hostname or f"fleet-{machine_id[-12:]}"
        return self.base_config(image, hostname, env, labels, volume, place, user)

    def base_config(
        self,
        image: str,
        hostname: str,
        env: Mapping[str, str],
        labels: Mapping[str, str],
        volume: str,
        place: Placement,
        user: tuple[int, int] | None = None,
    ) -> dict[str, Any]:
        """A machine container's (a pooled one's too): its daemon's environment, its limits,
        its network and every restriction; ``user``: its uid and gid (None: ``run_as``)."""
        env = {k: v for k, v in self._environ.items() if k in INHERITED_ENV} | dict(env)
        env |= {
            "FLEET_NATS_URL": self._nats_url,
            "FLEET_GIT_SHA": self._environ.get("FLEET_GIT_SHA") or git_sha() or "",
            STORE_VAR: CODE_MOUNT,
        }
        lim = place.limits
        config: dict[str, Any] = {
            "Image": image,
            "Hostname": hostname,
            "Env": [f"{k}={v}" for k, v in env.items()],
            # The machine's user from the first process on: a host uid of its own
            # (providers/docker/users.py), else uid 1000 or its devcontainer's remoteUser
            # (never 0). Nothing of the container, an image's /etc/ld.so.preload or
            # LD_PRELOAD included, ever runs as root or with a capability.
            "User": "{}:{}".format(*(user or run_as(place))),
            "Labels": {**labels, LABEL_STACK: self.stack},
            "HostConfig": {
                # No docker-init: it would hold the token in a dumpable environment. The
                # supervisor is the container's first process (non-dumpable,
                # daemon/supervision/nodump.py);
                # it reaps every orphan and handles SIGHUP/SIGTERM itself.
                "Init": False,
                "Privileged": False,
                # Docker's resolver (127.0.0.11) asks this one from the container's own
                # namespace: the platform's DNS proxy (providers/egress/dns.py), which only an
                # engine on this host lets the provisioner reach.
                **({"Dns": [RESOLVER[0]]} if self.local_engine() else {}),
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "Memory": lim.memory_mb * 1024 * 1024,
                "MemorySwap": lim.memory_mb * 1024 * 1024,
                "NanoCpus": int(lim.cpus * 1e9),
                "PidsLimit": lim.pids,
                "RestartPolicy": {"Name": "unless-stopped"},
                "NetworkMode": self.network,
                # The code the platform installs: read-only, beside the home
                # (providers/docker/code.py).
                "Mounts": [
                    {"Type": "volume", "Source": volume, "Target": MACHINE_HOME},
                    # The code and the token: the platform's, read-only (providers/docker/code.py).
                    *platform_mounts(volume),
                ],
                # The system is read-only; the home (its volume) and /tmp are the machine's.
                "ReadonlyRootfs": True,
                "Tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m"},
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
            },
        }
        return with_engine_runtime(config, place.runtime)

    async def exec_as_root(self, machine_id: str, params: ExecCommandParams) -> ExecCommandResult:
        """Refused by name: no docker machine runs a command as root
        (providers/docker/gvisor.py)."""
        raise refuse_root(machine_id, await self._container(machine_id))

    async def restart(self, machine_id: str) -> bool:
        """SIGHUP to the container's first process, the supervisor: the daemon restarts in
        place and its processes keep running."""
        c = await self._container(machine_id)
        if c is None or not c["State"]["Running"]:
            return False
        await c.kill(signal="SIGHUP")
        return True

    async def daemon_runs(self, machine_id: str) -> bool:
        c = await self._container(machine_id)
        return c is not None and bool(c["State"]["Running"])

    def local_engine(self) -> bool:
        return engine_is_local(self._engine_url, self._environ)

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        """What the machine's container uses now, as the engine's stats say
        (providers/machine_usage.py); its home's disk too when ``disk`` and the engine is this
        host's (its volume's directory, measured by providers/disk_walk.py: bounded, in the
        container's cgroups); None if it is not running."""
        c = await self._container(machine_id)
        if c is None or not c["State"]["Running"]:
            return None
        stats = await self.docker._query_json(f"containers/{c.id}/stats",
                                              params={"stream": "0", "one-shot": "1"})  # fmt: skip
        got = docker_usage(stats)
        homes = [m.get("Source") for m in c["Mounts"] or [] if m.get("Destination") == MACHINE_HOME]
        if disk and homes and homes[0] and self.local_engine():
            use, size = await home_disk(Path(homes[0]), self._walk, int(c["State"]["Pid"]))
            got = got.with_disk(None if use is None else use.bytes, size)
        return got

    async def netns_pid(self, machine_id: str) -> int | None:
        """The container's first process, if it is this host's (the engine may be remote)."""
        c = await self._container(machine_id)
        if c is None or not c["State"]["Running"]:
            return None
        pid = int(c["State"]["Pid"])
        return await asyncio.to_thread(container_pid, machine_id, pid, c.id)

    async def remove(self, machine_id: str) -> None:
        c = await self._container(machine_id)
        volumes = {volume_name(machine_id)}
        if (recorded := await stopped_home(self.docker, machine_id)) is not None:
            volumes.add(recorded)
        if c is not None:
            volumes |= set(home_volumes(c))  # a claimed pool container's is the pool's
            # Every process of the container ends with it (its pid namespace), setsid or not.
            await c.delete(force=True)
        await remove_volume(self.docker, home_ref_name(machine_id))
        await self.forks.forget(machine_id)
        if not self.keep_volumes:
            for name in volumes:
                await remove_home(self.docker, name)
        log.info("provider.docker_removed", machine_id=machine_id, kept_volume=self.keep_volumes)

    async def stop(self, machine_id: str, grace_s: int = 5) -> bool:
        """Stop the container (its supervisor tells the daemon to end its processes, SIGKILL
        after ``grace_s``) and remove it; its home volume stays, named in a reference
        volume when it is not the machine's own (a claimed pool container's)."""
        c = await self._container(machine_id)
        if c is None:
            return False
        homes = home_volumes(c)
        if homes and homes[0] != volume_name(machine_id):
            await remember_home(
                self.docker,
                machine_id,
                homes[0],
                {LABEL_MACHINE: machine_id, LABEL_STACK: self.stack},
            )
        try:
            was_up = bool(c["State"]["Running"])
            if was_up:
                await c.stop(t=grace_s)
            if LABEL_ENVIRONMENT not in (c["Config"]["Labels"] or {}):
                await c.delete(force=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise ProviderError(f"docker: cannot stop {machine_id}: {exc.message}") from None
        log.info("provider.docker_stopped", machine_id=machine_id, home=homes[:1])
        return was_up

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        """Put the commit's daemon code in the machine's code volume (providers/docker/code.py),
        which its container has read-only, and record it as current."""
        c = await self._container(machine_id)
        homes = home_volumes(c) if c is not None else []
        if not homes:
            raise ProviderError(f"machine {machine_id} has no container")
        sha = await asyncio.to_thread(resolve_sha, self._code_repo, target_ref)
        body = await asyncio.to_thread(store_archive, self._code_repo, sha)
        await install_store(self.docker, await self.image(), code_volume(homes[0]), body)
        return f"installed code {sha[:12]} in {CODE_MOUNT}"

    async def daemon_pid(self, machine_id: str) -> int | None:
        """The daemon's host pid (tests and benchmarks kill it): the supervisor's child."""
        c = await self._container(machine_id)
        if c is None or not c["State"]["Running"]:
            return None
        top = await c.top()
        return _daemon_of(top)


def run_as(place: Placement, uid: int | None = None) -> tuple[int, int]:
    """The machine's user: the host uid of its own its home holds (providers/docker/users.py),
    else uid 1000, or its devcontainer's remoteUser (never 0)."""
    if uid is not None:
        return uid, uid
    return place.user if place.user else (MACHINE_UID, MACHINE_UID)


def token_owner(place: Placement, user: tuple[int, int]) -> tuple[int, int]:
    """Who reads the machine's token file: its first process, ``user`` (a gvisor machine's is
    root)."""
    return ROOT if place.runtime == "gvisor" else user


def named(uid: int | None, of_image: bool) -> dict[str, str] | None:
    """The ``passwd`` and ``group`` naming a machine's own ``uid`` in its secret volume, which
    the machine image's NSS reads first; none for a machine of an environment's image (whose
    own files are renumbered: ``name_in_image``), even one built from the machine image."""
    return None if uid is None or of_image else user_files(uid)


def user_of(user: str) -> tuple[int, int]:
    """A container's ``UID:GID``; root (a container made before its first process was the
    machine's user) reads a root-only token, as it did then."""
    uid, _, gid = user.partition(":")
    return (int(uid), int(gid or uid)) if uid.isdigit() else (0, 0)


def with_runtime(
    config: dict[str, Any], image: str, runtime: Runtime, image_env: list[str]
) -> None:
    """``config`` (the machine image's) for a machine of ``image`` (whose config's environment
    is ``image_env``): the platform's runtime mounted read-only and its daemon started through
    it, none of the image's loader variables in its environment (base/loader.py); the system
    writable (its writes live in the container's own layer, kept across stop and start)."""
    env = dict(e.split("=", 1) for e in config["Env"]) | runtime.env()
    env |= withheld(image_env, env)
    config |= {
        "Image": image, "Entrypoint": runtime.argv(), "Cmd": [], "WorkingDir": MACHINE_HOME,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": config["Labels"] | {LABEL_ENVIRONMENT: image},
    }  # fmt: skip
    host = config["HostConfig"]
    host["Mounts"] = [*host["Mounts"], *runtime.mounts()]
    host["ReadonlyRootfs"] = False


def _daemon_of(top: Mapping[str, Any]) -> int | None:
    titles = list(top["Titles"])
    pid_at, cmd_at = titles.index("PID"), titles.index("CMD")
    rows = [(int(r[pid_at]), str(r[cmd_at])) for r in top["Processes"]]
    # The daemon itself, not the supervisor (whose command line ends the same).
    daemons = [pid for pid, cmd in rows if cmd.split()[-2:] == ["-m", "daemon"]
               and "daemon.supervise" not in cmd]  # fmt: skip
    return daemons[0] if daemons else None


async def ensure_network(docker: aiodocker.Docker, name: str) -> str:
    """The machines' bridge network (made if missing); its gateway address, where NATS must
    listen for containers to reach it."""
    try:
        net = await docker.networks.get(name)
        info = await net.show()
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise ProviderError(f"docker: network {name}: {exc.message}") from None
        net = await docker.networks.create({
            "Name": name, "Driver": "bridge", "CheckDuplicate": True,
            "Labels": {"fleet.network": "machines"},
            # No traffic between machines: each reaches the outside and NATS, never another.
            "Options": {"com.docker.network.bridge.enable_icc": "false"},
        })  # fmt: skip
        info = await net.show()
    configs = info.get("IPAM", {}).get("Config") or []
    gateway = next((c["Gateway"] for c in configs if c.get("Gateway")), None)
    if not gateway:
        raise ProviderError(f"docker network {name} has no gateway address")
    return str(gateway)


async def stop_stack(docker: aiodocker.Docker, stack: str, grace_s: int = 5) -> int:
    """Stop (not remove) every running machine container of ``stack``; how many."""
    found = await docker.containers.list(filters={"label": [f"{LABEL_STACK}={stack}"]})
    await asyncio.gather(*(c.stop(t=grace_s) for c in found))
    return len(found)
