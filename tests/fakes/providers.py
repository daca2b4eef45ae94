"""A provider (``providers.base.Provider`` and ``MachineControl``) whose machines are fake daemons.

``start`` boots the machine's ``FakeMachine`` and, like a real daemon that connected, publishes
its ``ready`` report (once per boot); ``stop`` takes the daemon away. ``fail_start`` makes the
next starts raise, as a provider that cannot start a machine does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contracts.bus.events import DaemonStatusReported, HomeCopy, encode_event, subject_of
from contracts.errors import NotSupported, ProviderError
from contracts.ids import new_event_id
from controlplane.policy import CodeVersions
from tests.fakes.bus import FakeBus
from tests.fakes.daemons import FakeDaemons, FakeMachine


@dataclass
class FakeProvider:
    bus: FakeBus
    daemons: FakeDaemons
    name: str = "local"
    #: Publish the daemon's ready report when a machine boots.
    report_ready: bool = True
    #: Raised by ``start`` while set.
    fail_start: Exception | None = None
    can_install_code: bool = True
    can_restart: bool = True
    #: Every start, removal and stop, in order: (machine id, token) and machine ids.
    starts: list[tuple[str, str]] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    installs: list[tuple[str, str]] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    #: Every home copy (a fork's): (source, machine id).
    clones: list[tuple[str, str]] = field(default_factory=list)
    #: The snapshots it holds.
    snapshots: set[str] = field(default_factory=set)
    #: Every pause and resume, in order: machine ids.
    pauses: list[str] = field(default_factory=list)
    resumes: list[str] = field(default_factory=list)
    #: A resumed machine's external id: its restored sandbox is a new process.
    resumed_as: dict[str, str] = field(default_factory=dict)
    #: Raised by ``pause`` while set (a Conflict: refused, the machine runs on).
    fail_pause: Exception | None = None
    #: A restored daemon serves at once (False: not until a test brings it up, as a real one
    #: reconnects a moment after its restore).
    resumed_daemon_serves: bool = True
    #: The machines whose sandbox runs (started or restored, not stopped, paused or removed).
    running: set[str] = field(default_factory=set)
    #: What each machine's home (or snapshot) takes on disk, by id (``disk_bytes``): a
    #: snapshot or a fork's home takes what its source took.
    disk: dict[str, int] = field(default_factory=dict)

    async def disk_bytes(self, source_id: str) -> int:
        return self.disk.get(source_id, 0)

    async def pause(self, machine_id: str) -> int:
        """The daemon goes away with its memory kept; the image's size."""
        self.pauses.append(machine_id)
        if self.fail_pause is not None:
            raise self.fail_pause
        self.daemons[machine_id].mode = "unavailable"
        self.running.discard(machine_id)
        return 4096

    async def resume(self, machine_id: str) -> str:
        """The same daemon back (no new boot: no ready report), as a process of its own."""
        self.resumes.append(machine_id)
        self.running.add(machine_id)
        if self.resumed_daemon_serves:
            self.daemons[machine_id].mode = "up"
        self.resumed_as[machine_id] = f"{self.external_id(machine_id)}:resumed-{len(self.resumes)}"
        return self.resumed_as[machine_id]

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        self.clones.append((source_id, machine_id))
        if source_id in self.disk:
            self.disk[machine_id] = self.disk[source_id]
        return HomeCopy(source=source_id, how="cow", pause_ms=0.0, took_ms=1.0)

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        self.snapshots.add(snapshot_id)
        if machine_id in self.disk:
            self.disk[snapshot_id] = self.disk[machine_id]
        return HomeCopy(source=machine_id, how="cow", pause_ms=0.0, took_ms=1.0)

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        if snapshot_id not in self.snapshots:
            return False
        self.snapshots.discard(snapshot_id)
        self.disk.pop(snapshot_id, None)
        return True

    def external_id(self, machine_id: str) -> str:
        return f"{self.name}:{machine_id}"

    async def start(self, machine_id: str, token: str) -> str:
        self.starts.append((machine_id, token))
        if self.fail_start is not None:
            raise self.fail_start
        booted = machine_id in self.daemons.machines and (self.daemons[machine_id].mode == "up")
        if booted and machine_id in self.resumed_as:  # running: the process a resume made
            return self.resumed_as[machine_id]
        self.resumed_as.pop(machine_id, None)
        self.running.add(machine_id)
        machine = self.daemons.boot(machine_id)
        machine.mode = "up"
        if not booted and self.report_ready:
            await self.bus.publish(
                DaemonStatusReported(
                    event_id=new_event_id(), machine_id=machine_id, status="ready",
                    version=machine.version, git_sha=machine.git_sha, boot_id=new_event_id(),
                )
            )  # fmt: skip
        return self.external_id(machine_id)

    async def report_stopping(self, machine: FakeMachine) -> None:
        """A daemon asked to stop reports ``stopping``: stored, and seen live on core NATS."""
        event = DaemonStatusReported(
            event_id=new_event_id(), machine_id=machine.machine_id, status="stopping",
            version=machine.version, git_sha=machine.git_sha, boot_id=new_event_id(),
        )  # fmt: skip
        await self.bus.publish(event)
        await self.bus.fake_nc.publish(subject_of(event), encode_event(event))

    async def remove(self, machine_id: str) -> None:
        self.removes.append(machine_id)
        self.running.discard(machine_id)
        if machine_id in self.daemons.machines:
            self.daemons[machine_id].mode = "unavailable"

    async def stop(self, machine_id: str) -> bool:
        """The daemon goes away, the machine (its fake home) stays; a start boots it again."""
        self.stops.append(machine_id)
        self.running.discard(machine_id)
        machine = self.daemons.machines.get(machine_id)
        was_up = machine is not None and machine.mode == "up"
        if machine is not None:
            machine.mode = "unavailable"
        return was_up

    async def daemon_runs(self, machine_id: str) -> bool:
        return machine_id in self.running

    async def netns_pid(self, machine_id: str) -> int | None:
        raise NotSupported(f"provider {self.name!r} has no network namespace per machine")

    async def restart(self, machine_id: str) -> bool:
        """The daemon stops and starts again (a new boot), its processes kept."""
        if not self.can_restart:
            raise NotSupported(f"provider {self.name!r} cannot restart a daemon")
        machine = self.daemons.machines.get(machine_id)
        if machine is None or machine.mode != "up":
            return False
        self.restarts.append(machine_id)
        return True

    async def install_code(self, machine_id: str, target_ref: str) -> str:
        if not self.can_install_code:
            raise NotSupported(f"provider {self.name!r} cannot refresh code")
        self.installs.append((machine_id, target_ref))
        self.daemons[machine_id].installed_code.add(target_ref)
        return f"installed {target_ref} on {machine_id}"


def provider_error(message: str = "no capacity") -> ProviderError:
    return ProviderError(message)


class FakeHistory(CodeVersions):
    """The platform's code repo as a commit graph in memory (child: parents) for the fast layer;
    the real ``git merge-base`` answers are tested against real repos in tests/integration."""

    def __init__(self, platform_sha: str, parents: dict[str, list[str]]) -> None:
        super().__init__(Path("/nonexistent"), platform_sha)
        self.parents = parents

    async def _is_ancestor(self, older: str, newer: str) -> bool | None:
        self.git_calls += 1
        if older not in self.parents or newer not in self.parents:
            return None
        seen, todo = set(), [newer]
        while todo:
            sha = todo.pop()
            if sha == older:
                return True
            if sha not in seen:
                seen.add(sha)
                todo.extend(self.parents.get(sha, []))
        return False
