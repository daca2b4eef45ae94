"""A machine's resource limits: platform defaults (``FLEET_MACHINE_*``), maxima
(``FLEET_MACHINE_MAX_*``) and an instance's own, for every provider that can apply them
(docker: the container's HostConfig; local: a cgroup, providers/sandbox/cgroup.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 512

    def __post_init__(self) -> None:
        # The engine (and a cgroup's writer) reads 0 as no limit at all: none is ever made.
        if not (self.memory_mb > 0 and self.cpus > 0 and self.pids > 0):
            raise ValueError(f"limits must be positive: {self}")


#: Under gVisor (its ptrace platform) each thread of a machine is several host tasks of its
#: sandbox (Chromium's 125 threads were 854 here), and the sandbox's host cgroup counts those:
#: it gets this many per pid the machine may have, so a pids limit means about as many threads
#: in a gvisor machine as in any other.
GVISOR_TASKS_PER_PID = 8


def on_host(limits: Limits, on_gvisor: bool) -> Limits:
    """What the host cgroup of a machine gets for ``limits``: a gvisor sandbox's pids scaled
    by ``GVISOR_TASKS_PER_PID``; any other machine's as they are."""
    if not on_gvisor:
        return limits
    return Limits(limits.memory_mb, limits.cpus, limits.pids * GVISOR_TASKS_PER_PID)


def with_own(
    defaults: Limits, memory_mb: int | None, cpus: float | None, pids: int | None
) -> Limits:
    """``defaults`` with an instance's own limits where it set them."""
    return Limits(
        memory_mb=defaults.memory_mb if memory_mb is None else memory_mb,
        cpus=defaults.cpus if cpus is None else cpus,
        pids=defaults.pids if pids is None else pids,
    )


def within(limits: Limits, cpus: float | None, memory_mb: int | None) -> Limits | None:
    """``limits`` with the CPUs and memory a machine asks for (a devcontainer's
    ``hostRequirements``) in their place; None if it asks for more than ``limits`` allow, or
    for nothing (0: the engine's "no limit")."""
    if (cpus is not None and not 0 < cpus <= limits.cpus) or (
        memory_mb is not None and not 0 < memory_mb <= limits.memory_mb
    ):
        return None
    return Limits(memory_mb=limits.memory_mb if memory_mb is None else memory_mb,
                  cpus=limits.cpus if cpus is None else cpus, pids=limits.pids)  # fmt: skip


@dataclass(frozen=True)
class Placement:
    """What a provider needs to know of a machine beyond its id."""

    instance_id: str
    limits: Limits
    #: The image ID of the machine's environment on the engine; None: the provider's default.
    image: str | None = None
    #: The (uid, gid) the machine acts as in that image (a devcontainer's ``remoteUser``),
    #: never 0; None: the provider's default user.
    user: tuple[int, int] | None = None
    #: Its runtime (docs/runtimes.md): ``namespaces`` or ``gvisor``.
    runtime: str = "namespaces"
    #: Its devcontainer's user is root in the image (``user`` is None then): honoured on a
    #: gvisor machine only (root of its own kernel); elsewhere the provider's default user.
    root: bool = False
    #: The names in its instance's egress policy that take effect (a runtime that cannot
    #: enforce names refuses to start the machine under a policy with any).
    egress_names: tuple[str, ...] = ()


PlacementOf = Callable[[str], Awaitable[Placement]]
