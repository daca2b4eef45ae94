"""python -m services.provisioner"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import aiodocker
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.platform_code import code_repo
from base.ticker import Ticker
from contracts.errors import FleetError
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.events.subscriptions import enter_subscriptions
from controlplane.host_addresses import platform_addresses
from controlplane.policy import Placement
from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.security.crypto import SecretBox
from controlplane.settings import GVISOR_POOL, Settings
from controlplane.store import Store
from environments.shared_builds import SharedBuilds
from providers.docker import DockerPoolBackend, DockerProvider
from providers.egress import PlatformAddresses
from providers.gvisor import Runsc, gvisor_proxy_url
from providers.host_memory import host_memory
from providers.local import GvisorPoolBackend, LocalPoolBackend, LocalProvider, homes as homes_fs
from providers.registry import Providers, disk_walk, docker_provider, platform_limits
from providers.swarm import SwarmProvider
from providers.warm_pool import PoolBackend, WarmPool
from services.provisioner.builds.environment import image_id, machine_placement, pool_key
from services.provisioner.builds.environment_builds import EnvironmentBuilds
from services.provisioner.egress.docker_networks import DockerNetworks
from services.provisioner.egress.enforcer import EgressPolicies, dns_proxy, netns_policy
from services.provisioner.egress.events import EgressEvents
from services.provisioner.egress.secrets_proxy import gvisor_door, secrets_cache, secrets_proxy
from services.provisioner.host import HostHeartbeat
from services.provisioner.host_rpc_server import HostMethods, host_rpc_server
from services.provisioner.memory_pressure import MemoryPressure
from services.provisioner.service import Provisioner, provisioner
from services.provisioner.sweep import DockerShelf, LocalShelf, Sweeper
from services.provisioner.usage_sampler import UsageSampler

log = structlog.get_logger(__name__)


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    # The one clock of this process's time-dependent rules (tests pass a manual one).
    clock = SYSTEM_CLOCK
    store = await stack.enter_async_context(Store.of(settings))
    bus = await stack.enter_async_context(Bus(settings, name="provisioner"))
    metrics = await service_metrics(settings, stack)

    async def placement(machine_id: str) -> Placement:
        """The machine's instance, limits, image and user
        (services/provisioner/builds/environment.py)."""
        return await machine_placement(store, settings, await store.get_machine(machine_id))

    # The egress proxy, and its door on the host first: a gvisor sandbox's gateway table opens
    # the door's port only if this process holds it.
    secrets = await stack.enter_async_context(secrets_cache(settings, store, bus))
    # The host's and NATS's addresses, and the docker engine's networks once they are listed
    # (below): never a destination of the proxies' unless a policy names it.
    platform = PlatformAddresses(await platform_addresses(settings))
    proxy = await stack.enter_async_context(
        secrets_proxy(settings, store, platform, bus, secrets.secrets)
    )
    door = await stack.enter_async_context(gvisor_door(settings, proxy))
    repo = code_repo(settings.code_repo)
    local = await _local_provider(settings, store, repo, placement, door.port,
                                  engine=lambda: docker.docker)  # fmt: skip
    swarm = SwarmProvider(
        data_dir=settings.data_path, nats_url=settings.nats_url, environ=os.environ
    )

    docker = await stack.enter_async_context(docker_provider(settings, repo, placement=placement))
    providers = Providers(local=local, swarm=swarm, docker=docker)
    await stack.enter_async_context(DockerNetworks(lambda: docker.docker, platform))
    memory = host_memory(settings.memory_cgroup)
    heartbeat = HostHeartbeat(store, settings, clock, memory, gvisor_proxy_url(settings))
    refusals = await stack.enter_async_context(EgressEvents(bus, clock=clock.monotonic))
    # The machines this host's resolver serves, and their policies: told by the enforcer.
    policies = EgressPolicies(store)
    dns = await stack.enter_async_context(
        await dns_proxy(settings, refusals.refused, platform, policies.policy_of)
    )
    # Environment builds and checkouts, shared by machines' creates and environments.build;
    # stopped after both, so a build still running is cancelled and joined.
    shared = await stack.enter_async_context(SharedBuilds())
    box = SecretBox(settings.secret_key)
    svc = provisioner(
        store=store, bus=bus, box=box, settings=settings, heartbeat=heartbeat, clock=clock,
        providers=providers,
        pools=await warm_pools(settings, stack, local, docker, clock),
        engine=lambda: docker.docker, dns=dns, refusals=refusals, proxy=proxy, door=door,
        policies=policies, shared=shared,
        # A resumed machine is ready once its daemon answers: asked as the stages ask daemons.
        daemons=DaemonClient(bus.nc, keys=MachineKeys(store, box),
                             timeout_s=settings.rpc_timeout_s),
    )  # fmt: skip
    await svc.resume()
    await stack.enter_async_context(heartbeat)
    if settings.pause_under_mb > 0:
        await stack.enter_async_context(MemoryPressure(store=store, bus=bus, settings=settings,
                                                       memory=memory, clock=clock))  # fmt: skip
    await _serve_host(settings, stack, store, bus, svc, box, shared, providers, clock)
    await enter_subscriptions(stack, svc.handlers, bus, settings, metrics)


async def _serve_host(settings: Settings, stack: AsyncExitStack, store: Store, bus: Bus,
                      svc: Provisioner, box: SecretBox, shared: SharedBuilds,
                      providers: Providers, clock: Clock) -> None:  # fmt: skip
    """This host's methods (the gateway routes a machine's restart, refreshCode, snapshots
    and egress to its host) and its sweep of what no record holds, entered on ``stack``."""
    local, docker = providers.local, providers.docker
    methods = HostMethods(store=store, settings=settings, providers=providers,
                          egress=svc.machines.egress, box=box, disk=svc.machines.disk,
                          builds=EnvironmentBuilds(store, settings, lambda: docker.docker,
                                                   shared))  # fmt: skip
    await stack.enter_async_context(host_rpc_server(bus.nc, methods))
    # What this host's machines use, sampled every FLEET_METRICS_SAMPLE_S (docs/monitoring.md).
    await stack.enter_async_context(UsageSampler(
        store, providers, settings.host_id,
        settings.metrics_sample_s, clock, settings.metrics_disk_s,
    ))  # fmt: skip
    # Snapshots and memory images that no record holds: at its start, then every
    # FLEET_SWEEP_INTERVAL_S.
    sweeper = Sweeper(store, [LocalShelf.of(local), DockerShelf(docker)], settings.host_id, clock,
                      grace_s=settings.sweep_grace_s)  # fmt: skip
    await stack.enter_async_context(Ticker(settings.sweep_interval_s, clock, tick=sweeper.sweep,
                                           name="sweep", failed_event="sweep.failed",
                                           at_once=True))  # fmt: skip


async def _local_provider(settings: Settings, store: Store, repo: Path,
                          placement: Callable[[str], Awaitable[Placement]], door_port: int,
                          engine: Callable[[], aiodocker.Docker]) -> LocalProvider:  # fmt: skip
    """The local provider: sandboxes on this host (bwrap or gVisor), their homes on ``cow``."""
    cow = await asyncio.to_thread(
        homes_fs.prepare, settings.data_path, settings.homes_fs, settings.homes_image_gb
    )
    runsc = Runsc(settings.runsc, settings.gvisor_platform, settings.data_path,
                  settings.gvisor_park_wait_s, settings.nats_url, door_port)  # fmt: skip
    return LocalProvider(
        cow=cow, data_dir=settings.data_path, code_repo=repo, nats_url=settings.nats_url,
        environ=os.environ, sandbox=settings.sandbox == "bwrap",
        own_network=settings.sandbox_network == "own", forwarded=settings.sandbox_forwarded,
        shared=settings.sandbox_shared, uids=settings.sandbox_uid_range, placement=placement,
        default_limits=platform_limits(settings), engine=engine, runsc=runsc,
        netns_ready=partial(netns_policy, store, settings.nats_url, proxy_port=door_port),
        disk_walk=disk_walk(settings),
    )  # fmt: skip


async def warm_pools(
    settings: Settings,
    stack: AsyncExitStack,
    local: LocalProvider,
    docker: DockerProvider,
    clock: Clock,
) -> dict[str, WarmPool]:
    """This process's warm pools (FLEET_WARM_POOL), stopped with it; their rules on ``clock``."""
    pools: dict[str, WarmPool] = {}
    for name, size in settings.warm_pool_sizes.items():
        if size <= 0:
            continue
        backend: PoolBackend
        if name.startswith("docker@"):  # an environment's: keyed by its image's ID
            try:
                image = await image_id(docker.docker, name.partition("@")[2])
            except FleetError as exc:
                log.warning("provision.pool_no_image", pool=name, error=exc.message)
                continue
            backend, name = DockerPoolBackend(docker, image), pool_key("docker", image)
        elif name == "docker":
            backend = DockerPoolBackend(docker)
        elif name == "local" and local.parts.host.sandbox:
            backend = LocalPoolBackend(local)
        elif name == GVISOR_POOL:
            try:
                backend = GvisorPoolBackend(local)
            except FleetError as exc:  # no runsc here, NATS on the loopback: said, not fatal
                log.warning("provision.pool_unsupported", pool=name, error=exc.message)
                continue
        else:
            log.warning(
                "provision.pool_unsupported", provider=name, sandbox=local.parts.host.sandbox
            )
            continue
        pool = WarmPool(backend, size, min_available_mb=settings.warm_pool_min_available_mb,
                        memory=host_memory(settings.memory_cgroup), clock=clock)  # fmt: skip
        pools[name] = await stack.enter_async_context(pool)
    return pools


def main() -> None:
    run_service("provisioner", build)


if __name__ == "__main__":
    main()
