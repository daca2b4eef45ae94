"""Every provider by name, for the processes that need more than one."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from controlplane.policy import Limits, Placement, PlacementOf
from controlplane.settings import Settings
from providers.base import Provider
from providers.disk_walk import WalkBound
from providers.docker import DockerProvider, Say
from providers.local import LocalProvider
from providers.swarm import SwarmProvider


def platform_limits(settings: Settings) -> Limits:
    return Limits(settings.machine_memory_mb, settings.machine_cpus, settings.machine_pids)


def docker_provider(
    settings: Settings,
    repo: Path,
    *,
    placement: PlacementOf | None = None,
    say: Say | None = None,
    engine_url: str | None = None,
) -> DockerProvider:
    """The docker provider as configured (an async context manager: it holds the engine's
    client); without ``placement`` every machine gets the platform's limits. The engine is
    ``engine_url``, else DOCKER_HOST's, else the local one."""

    async def platform_placement(machine_id: str) -> Placement:
        return Placement("", platform_limits(settings))

    return DockerProvider(
        nats_url=settings.nats_url, network=settings.docker_network,
        base_image=settings.docker_base_image, work_dir=settings.data_path / "image-build",
        code_repo=repo, placement=placement or platform_placement, environ=os.environ,
        keep_volumes=settings.docker_keep_volumes, say=say, stack=stack_id(settings),
        default_limits=platform_limits(settings), engine_url=engine_url,
        gvisor_platform=settings.gvisor_platform, disk_walk=disk_walk(settings),
        uids=settings.docker_uid_range,
    )  # fmt: skip


def disk_walk(settings: Settings) -> WalkBound:
    """How much of a home a measurement of its disk may walk (FLEET_DISK_WALK_*)."""
    return WalkBound(settings.disk_walk_entries, settings.disk_walk_s)


def stack_id(settings: Settings) -> str:
    """What a stack's containers are labelled with (``fleet.stack``): its data dir."""
    return str(settings.data_path.resolve())


@dataclass(frozen=True)
class Providers(Mapping[str, Provider]):
    """A provisioner's providers, by name (a machine's ``provider``): the one map its parts are
    handed, made once in its composition root. What each can do beyond ``Provider`` is asked
    of it with ``providers.base.capability``."""

    local: LocalProvider
    swarm: SwarmProvider
    docker: DockerProvider

    def _all(self) -> tuple[Provider, ...]:
        return (self.local, self.swarm, self.docker)

    def __getitem__(self, name: str) -> Provider:
        for provider in self._all():
            if provider.name == name:
                return provider
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (provider.name for provider in self._all())

    def __len__(self) -> int:
        return len(self._all())
