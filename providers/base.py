"""What every provider offers (``Provider``: start, stop and remove a machine), what some offer
beyond it (a capability: each protocol below), and which part of a provider has each
(``Capabilities``, ``capability``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from contracts.bus.events import HomeCopy
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from providers.machine_usage import Usage


@runtime_checkable
class CodeInstaller(Protocol):
    async def install_code(self, machine_id: str, target_ref: str) -> str:
        """Put the platform's code at ``target_ref`` on the machine, ready for the daemon's
        selfUpdate; returns what was done. Raises NotSupported (with the reason) if this
        provider cannot."""


@runtime_checkable
class NetnsHolder(Protocol):
    async def netns_pid(self, machine_id: str) -> int | None:
        """A host pid in the machine's own network namespace (where its egress policy is
        written: providers/egress/nftables.py); None if the machine is not running. Raises
        NotSupported (with the reason) if the machine has no network namespace of its own
        on this host."""


@runtime_checkable
class InterfaceEgress(Protocol):
    def egress_on_interfaces(self, machine_id: str) -> bool:
        """Whether the machine's egress policy goes on its namespace's interfaces
        (providers/egress/netdev.py): its network stack writes frames the ``inet`` hooks
        never see (gVisor's)."""


@runtime_checkable
class PastaOwned(Protocol):
    def pasta_owners(self, machine_id: str) -> list[str]:
        """The names the machine's pasta was started under (its id, its pool slot's): who a
        connection its pasta holds on the host is (providers/sandbox/pasta_peer.py)."""


@runtime_checkable
class DaemonWatch(Protocol):
    async def daemon_runs(self, machine_id: str) -> bool:
        """Whether the machine's daemon runs here (its sandbox, its container: a daemon that
        ends is started again by its supervisor inside), whether or not it serves yet."""


@runtime_checkable
class MachineControl(CodeInstaller, NetnsHolder, Protocol):
    """What the gateway asks of a provider about a running machine."""

    async def restart(self, machine_id: str) -> bool:
        """Restart the machine's daemon in place, its processes kept; False if the machine is
        not running. Raises NotSupported (with the reason) if this provider cannot."""


class Provider(Protocol):
    name: str

    async def start(self, machine_id: str, token: str) -> str:
        """Start the machine (idempotent) and return its external id."""

    async def remove(self, machine_id: str) -> None:
        """Stop the machine for good (idempotent)."""

    async def stop(self, machine_id: str) -> bool:
        """End every process of the machine (its container too) and keep its home, for a
        later ``start`` of the same machine (idempotent); True if something was running."""


@runtime_checkable
class HomeCloner(Protocol):
    """A provider whose machines can be forked (providers/local/homes.py)."""

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        """``machine_id``'s home, ``source_id``'s as of one instant; how it was copied."""


@runtime_checkable
class SnapshotTaker(Protocol):
    """A provider that keeps read-only snapshots of its machines' homes."""

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        """A read-only copy of the machine's home as of one instant; how it was copied."""

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        """Remove the snapshot (machines made from it keep their homes); False if none."""


@runtime_checkable
class RootExecutor(Protocol):
    """A provider that can run a command as root inside a machine whose runtime allows it
    (``gvisor``: root of the machine's own kernel, never the host's)."""

    async def exec_as_root(self, machine_id: str, params: ExecCommandParams) -> ExecCommandResult:
        """Run ``params`` as uid 0 in the machine; NotSupported if its runtime has no root."""


@runtime_checkable
class Pauser(Protocol):
    """A provider that can pause a machine with its memory and processes, and resume it
    (``gvisor``: runsc's checkpoint and restore)."""

    async def pause(self, machine_id: str) -> int:
        """Write the machine's memory and processes to disk and end its sandbox; the image's
        size in bytes. Conflict if refused before the sandbox was touched (it runs on);
        ProviderError if the pause failed after (the sandbox may be gone)."""

    async def resume(self, machine_id: str) -> str:
        """Restore a paused machine from its image; its daemon reconnects. Its external id
        now (a restored sandbox is a new process)."""


@runtime_checkable
class MemoryForker(Protocol):
    """A provider that can fork a machine with its memory and processes (``gvisor``)."""

    async def take_memory_image(
        self, machine_id: str, image_id: str, forks: int | None,
        renew: Callable[[], Awaitable[str]],
    ) -> tuple[int, float, HomeCopy]:  # fmt: skip
        """Checkpoint the machine and restore it at once, keeping its image and a copy of its
        home for ``forks`` forks (MachineCreated.memory_image), or until deleted (None: a
        snapshot's); the image's size, how long the machine stood still (ms) and how its home
        was copied. ``renew`` stores a new credential and gives it, before
        the machine's daemon reconnects with it."""


@runtime_checkable
class DiskMeter(Protocol):
    """A provider that can say what a machine's (or a snapshot's) copy on its host takes."""

    async def disk_bytes(self, source_id: str) -> int:
        """What the home of machine or snapshot ``source_id`` takes on disk with what it
        wrote outside it (its layer), measured by descriptor; 0 if none is here."""


@runtime_checkable
class UsageMeter(Protocol):
    """A provider that can say what its machines use (providers/machine_usage.py)."""

    async def usage(self, machine_id: str, *, disk: bool = False) -> Usage | None:
        """The machine's counters now, its home's disk too when ``disk``; None if it does not
        run here."""


T = TypeVar("T")


@dataclass(frozen=True)
class Capabilities:
    """A provider's capabilities as parts of it: each protocol above and the object that has
    it, named once where the provider makes its parts (the local provider's pause is its
    gVisor machines', its snapshots its home copies'), so that the provider's own front
    carries no method that only passes a call on."""

    parts: Mapping[type[Any], object]

    def __post_init__(self) -> None:
        for kind, part in self.parts.items():
            if not isinstance(part, kind):
                raise TypeError(f"{type(part).__name__} has not {kind.__name__}'s methods")

    def of(self, kind: type[T]) -> T | None:
        return cast("T | None", self.parts.get(kind))


def capability(provider: object, kind: type[T]) -> T | None:
    """What of ``provider`` has the capability ``kind`` (a protocol above), or None: what its
    ``capabilities`` name, else the provider itself if it has the methods (a provider whose
    capabilities are its own methods: the docker and swarm providers, the tests' fakes)."""
    parts = getattr(provider, "capabilities", None)
    if isinstance(parts, Capabilities):
        return parts.of(kind)
    return provider if isinstance(provider, kind) else None
