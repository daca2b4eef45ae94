"""A machine's resource limits: platform defaults (``FLEET_MACHINE_*``), maxima
(``FLEET_MACHINE_MAX_*``) and an instance's own, for every provider that can apply them
(docker: the container's HostConfig; local: a cgroup, providers/cgroup.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 512


@dataclass(frozen=True)
class Placement:
    """What a provider needs to know of a machine beyond its id."""

    instance_id: str
    limits: Limits


PlacementOf = Callable[[str], Awaitable[Placement]]
