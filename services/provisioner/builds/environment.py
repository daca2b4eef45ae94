"""What a machine is made from: its instance's environment resolved to an image of the
machine's Docker engine, before the provider starts it (contracts/gateway/environments.py).

``resolve_image`` is the one place an environment becomes an image. ``image`` is looked up on
the engine; ``dockerfile`` and ``devcontainer`` go to ``build_image`` (the environments'
builder); no environment at all to ``DevcontainerDetector`` (a repo's devcontainer.json), else
the platform's default environment. A machine that cannot have its environment fails at stage
``environment`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiodocker
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.keyed_locks import KeyedLocks
from contracts.bus.events import EnvironmentBuildOutput
from contracts.errors import (
    BuildLimitExceeded,
    EnvironmentInvalid,
    HostRequirementsExceeded,
    ImageNotFound,
    ProviderError,
)
from contracts.gateway.environments import DEFAULT_ENVIRONMENT, DevcontainerSource, Environment
from contracts.ids import new_event_id
from contracts.models import Machine, Repo
from controlplane.bus import Bus
from controlplane.events.output_lines import OutputTrickle
from controlplane.policy import Limits, Placement, with_own, within
from controlplane.settings import Settings
from controlplane.store import Store
from environments import build as eb, cache as build_cache, sources
from environments.lifecycle_commands import MachineLifecycle
from environments.machine_environment import build_for_machine
from environments.shared_builds import SharedBuilds
from providers.docker import MACHINE_HOME
from providers.egress import netdev as egress_netdev
from providers.registry import platform_limits
from services.provisioner.builds import image_policy

log = structlog.get_logger(__name__)

STAGE = "environment"


@dataclass(frozen=True)
class EnvironmentContext:
    """Everything resolving (or building) a machine's environment may need."""

    store: Store
    bus: Bus
    machine: Machine
    #: The Docker engine the machine's image must be on (None: no engine configured).
    docker: aiodocker.Docker | None
    #: The event that asked for the machine (builds derive their events' ids from it).
    cause_event_id: str
    settings: Settings
    #: Auto-detection's memory (None: no repo's devcontainer.json is looked for).
    detector: DevcontainerDetector | None = None
    #: The process's builds and checkouts (None: this process builds no environment).
    shared: SharedBuilds | None = None


@dataclass(frozen=True)
class Resolved:
    #: ``Machine.environment``: ``default`` or the environment's one-line description.
    environment: str
    #: The image ID on the engine; None: the provider's own default.
    image: str | None


async def resolve_image(ctx: EnvironmentContext, environment: Environment | None) -> Resolved:
    """The image the machine runs, one the instance may use (image_policy.py). Raises
    ImageRefused, ImageNotFound, what the builder raises (EnvironmentRefused,
    EnvironmentInvalid, FeatureUnavailable, BuildFailed, BuildLimitExceeded) or ProviderError:
    the machine then fails at stage ``environment``."""
    if environment is None and ctx.docker is not None and ctx.detector is not None:
        environment = await ctx.detector.find(ctx)
    if environment is None:
        return Resolved(DEFAULT_ENVIRONMENT, None)
    if ctx.docker is None:
        raise ProviderError(f"{environment.describe()}: no Docker engine is configured")
    policy = await image_policy.for_instance(ctx.store, ctx.machine.instance_id)
    if environment.image is not None:
        found = await policy.image_id(ctx.docker, environment.image)
        return Resolved(environment.describe(), found)
    return Resolved(environment.describe(), await build_image(ctx, environment, policy))


def pool_key(provider: str, image: str | None) -> str:
    """The warm pool a machine of ``image`` (None: the default) may come from."""
    return provider if image is None else f"{provider}@{image}"


async def image_id(docker: aiodocker.Docker, ref: str) -> str:
    """The ID (``sha256:...``) of ``ref`` on the engine; ImageNotFound if it has none."""
    try:
        info = await docker.images.inspect(ref)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise ImageNotFound(f"image {ref!r} is not on the machine's Docker engine") from None
        raise ProviderError(f"docker: looking for image {ref!r}: {exc.message}") from None
    return str(info["Id"])


async def build_image(ctx: EnvironmentContext, environment: Environment,
                      policy: image_policy.ImagePolicy) -> str:  # fmt: skip
    """The image ID of a ``dockerfile`` or ``devcontainer`` environment, built on
    ``ctx.docker`` (or found in the builds' cache) from a host-side checkout of its repo; a
    devcontainer's lifecycle commands are recorded for the setup pusher to run. The build's
    log goes to the machine's events as it is made (``environment-build-output``, batched; the
    last of them before the machine's next event); ids of their own, since a build run again
    for a redelivered create says something new."""
    assert ctx.docker is not None
    docker = ctx.docker
    if ctx.shared is None:
        raise ProviderError(f"{environment.describe()}: this process builds no environment")
    shared = ctx.shared
    repo, source = await build_source(ctx.store, ctx.machine.instance_id, environment)
    mid = ctx.machine.id

    async def send(lines: list[str], dropped: int) -> None:
        await ctx.bus.publish(EnvironmentBuildOutput(event_id=new_event_id(), machine_id=mid,
                                                     lines=lines, dropped=dropped))  # fmt: skip

    async with OutputTrickle(send, what=f"build:{mid}") as output:

        def say(line: str) -> None:
            log.info("environment.build_log", machine_id=mid, line=line)
            output.line(line)

        made = await build_for_machine(
            ctx.docker, build_cache.from_settings(ctx.settings), repo, source, shared=shared,
            checkouts=ctx.settings.data_path / "checkouts", home=MACHINE_HOME, say=say,
            check_image=lambda ref: policy.check(docker, ref),
        )  # fmt: skip
    if made.lifecycle is not None:
        await ctx.store.lifecycles.save(mid, made.lifecycle)
    log.info("environment.built", machine_id=mid, image=made.built.image,
             build=made.built.build_id)  # fmt: skip
    return made.built.image


async def build_source(
    store: Store, instance_id: str, environment: Environment
) -> tuple[Repo, eb.EnvironmentSource]:
    """The repo a ``dockerfile`` or ``devcontainer`` environment is in, and what to build of it;
    EnvironmentInvalid if the instance no longer has that repo."""
    repos = {r.path: r for r in await store.list_repos(instance_id)}
    repo = repos.get(environment.repo or "")
    if repo is None:
        raise EnvironmentInvalid(f"{environment.describe()}: the instance has no such repo now")
    if environment.dockerfile is not None:
        d = environment.dockerfile
        return repo, eb.DockerfileSource(d.path, d.context)
    assert environment.devcontainer is not None
    return repo, eb.DevcontainerSource(environment.devcontainer.path)


class DevcontainerDetector:
    """With no environment set: the devcontainer environment of the first of the instance's
    repos (by path) that has a devcontainer file, in the spec's places (None: the platform's
    default). Each repo's answer is kept for ``ttl_s`` of ``clock``'s time, so creates in a
    row check a repo out once. A repo with credentials is not looked at (the host's checkout
    has no token), nor one the host cannot fetch: both leave the default, with a warning in
    the log. A checkout holds its directory by ``checkouts`` (the process's
    SharedBuilds.checkouts, which builds check out under too)."""

    def __init__(self, ttl_s: float = 60.0, clock: Clock = SYSTEM_CLOCK,
                 checkouts: KeyedLocks | None = None) -> None:  # fmt: skip
        self.ttl_s = ttl_s
        self.clock = clock
        self.checkouts = KeyedLocks() if checkouts is None else checkouts
        self._found: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def find(self, ctx: EnvironmentContext) -> Environment | None:
        for repo in sorted(await ctx.store.list_repos(ctx.machine.instance_id),
                           key=lambda r: r.path):  # fmt: skip
            path = await self._in(repo, ctx.settings, ctx.machine.id)
            if path is not None:
                log.info("environment.detected", machine_id=ctx.machine.id, repo=repo.path,
                         path=path)  # fmt: skip
                return Environment(devcontainer=DevcontainerSource(repo=repo.path, path=path))
        return None

    async def _in(self, repo: Repo, settings: Settings, machine_id: str) -> str | None:
        if repo.has_credentials:
            log.warning("environment.detect_skipped", machine_id=machine_id, repo=repo.path,
                        reason="its credentials are not used on the host")  # fmt: skip
            return None
        key, now = (repo.url, repo.branch), self.clock.monotonic()
        kept = self._found.get(key)
        if kept is not None and now - kept[0] < self.ttl_s:
            return kept[1]
        try:
            tree = await sources.checkout(repo, settings.data_path / "checkouts",
                                          locks=self.checkouts,
                                          limits=sources.clone_limits(settings))  # fmt: skip
            found = sources.find_devcontainer(tree)
        except (EnvironmentInvalid, BuildLimitExceeded, ValueError) as exc:  # not fetched
            # (or over its limits), or not a URL git takes
            log.warning("environment.detect_failed", machine_id=machine_id, repo=repo.path,
                        error=str(exc))  # fmt: skip
            found = None
        self._found[key] = (now, found)
        return found


async def machine_placement(store: Store, settings: Settings, machine: Machine) -> Placement:
    """What the provider needs of the machine: its instance, its limits (``machine_limits``),
    its environment's image and its user in it."""
    life = await store.lifecycles.load(machine.id, MachineLifecycle)
    user = None if life is None or life.user is None else (life.user.uid, life.user.gid)
    limits = await _limits(store, settings, machine, life)
    names = tuple(egress_netdev.names(await store.instance_settings.egress(machine.instance_id)))
    return Placement(machine.instance_id, limits, image=machine.environment_image, user=user,
                     runtime=machine.runtime, egress_names=names,
                     root=life is not None and life.root)  # fmt: skip


async def machine_limits(store: Store, settings: Settings, machine: Machine) -> Limits:
    """The machine's limits: the platform's, with its instance's own, with what its
    devcontainer's ``hostRequirements`` ask for in their place. HostRequirementsExceeded if they
    ask for more than the instance may have."""
    life = await store.lifecycles.load(machine.id, MachineLifecycle)
    return await _limits(store, settings, machine, life)


async def _limits(store: Store, settings: Settings, machine: Machine,
                  life: MachineLifecycle | None) -> Limits:  # fmt: skip
    own = await store.instance_settings.limits(machine.instance_id)
    base = with_own(platform_limits(settings), own.memory_mb, own.cpus, own.pids)
    asked = None if life is None else life.devcontainer.host_requirements
    if asked is None:
        return base
    memory_mb = None if asked.memory_bytes is None else -(-asked.memory_bytes // 2**20)
    if (asked.cpus is not None and asked.cpus < 1) or (memory_mb is not None and memory_mb < 1):
        raise EnvironmentInvalid(
            f"the devcontainer's hostRequirements ask for {asked.cpus} CPUs and {memory_mb} MB: "
            "each must be at least 1 (0 would be no limit at all)",
            data={"asked": {"cpus": asked.cpus, "memoryMb": memory_mb}},
        )  # fmt: skip
    got = within(base, asked.cpus, memory_mb)
    if got is None:
        raise HostRequirementsExceeded(
            f"the devcontainer's hostRequirements ask for {asked.cpus or base.cpus:g} CPUs and "
            f"{memory_mb or base.memory_mb} MB; instance {machine.instance_id} may have "
            f"{base.cpus:g} CPUs and {base.memory_mb} MB (instances.setLimits, admins)",
            data={"asked": {"cpus": asked.cpus, "memoryMb": memory_mb},
                  "allowed": {"cpus": base.cpus, "memoryMb": base.memory_mb}},
        )  # fmt: skip
    return got
