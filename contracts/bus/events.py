"""Machine events: JSON on ``machine.<kind>.<machineId>``, stored in the JetStream stream.

Every event carries ``type`` (its kind), ``eventId``, ``machineId`` and ``occurredAt``. Decode
any of them with ``decode_event``; ``subject_of`` gives the subject an event is published on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

import msgspec

from contracts.bus import subjects
from contracts.bus.subjects import ConfigKind, EventKind


def now() -> datetime:
    return datetime.now(UTC)


class WakeBy(StrEnum):
    """What brought a machine back (``by`` of ``machine.started``, ``machine.resume-requested``
    and ``machine.resumed``): a request to, or a call that needed the machine while it was
    paused or stopped (wake on access, ``FLEET_WAKE_ON_ACCESS``: docs/stop-start.md)."""

    #: ``machines.start`` or ``machines.resume``.
    REQUEST = "request"
    #: ``machines.exec``, ``machines.execStream``.
    EXEC = "exec"
    #: ``machines.writeFile``, ``readFile``, ``listDir``, ``stat``, ``removeFile``, a file
    #: upload or download.
    FILES = "files"
    #: A terminal: ``sessions.open``, ``.resize``, ``.close``, a session's attach.
    TERMINAL = "terminal"
    #: A port's tunnel (``fleet machines forward``, ``tunnel``, ssh).
    TUNNEL = "tunnel"
    #: A preview request (or ``machines.previewTicket``).
    PREVIEW = "preview"
    #: ``machines.process.start``, ``.kill``.
    PROCESS = "process"
    #: A codemode run against the machine.
    CODEMODE = "codemode"


class PauseBy(StrEnum):
    """What asked for a pause (``by`` of ``machine.pause-requested`` and ``machine.paused``)."""

    #: ``machines.pause``.
    REQUEST = "request"
    #: Auto-stop: the machine had no gateway activity for its instance's ``idleAfterS`` (or
    #: ``FLEET_AUTOPAUSE_IDLE_S``).
    IDLE = "idle"
    #: Its host's available memory fell under ``FLEET_PAUSE_UNDER_MB``: the provisioner paused
    #: its longest-idle machines before the kernel's OOM killer ended anything.
    MEMORY_PRESSURE = "memory-pressure"


class _BaseEvent(
    msgspec.Struct, rename="camel", kw_only=True, tag_field="type", omit_defaults=False
):
    event_id: str
    occurred_at: datetime = msgspec.field(default_factory=now)


class _Event(_BaseEvent, kw_only=True):
    machine_id: str


class HomeCopy(msgspec.Struct, rename="camel", kw_only=True):
    """How a machine's home was made from another's: a fork's, or a snapshot's."""

    #: The machine (or snapshot) it was copied from.
    source: str
    #: ``cow``: a copy-on-write snapshot; ``copy``: a plain copy.
    how: Literal["cow", "copy"]
    #: How long the source was paused (its processes frozen) for the copy; 0 with ``cow``.
    pause_ms: float
    #: How long the copy took.
    took_ms: float


class MachineCreated(_Event, tag=EventKind.CREATED.value, kw_only=True):
    instance_id: str
    provider: str
    #: A fork: the machine whose home this one starts with (as of one instant).
    fork_of: str | None = None
    #: Made from a snapshot (machines.create with fromSnapshot): its home is a copy of it.
    from_snapshot: str | None = None
    #: A fork with memory: the source's memory image (taken on its host) it is restored from.
    memory_image: str | None = None


class MachineProvisioned(_Event, tag=EventKind.PROVISIONED.value, kw_only=True):
    provider: str
    external_id: str
    #: A fork's (or a snapshot's) home: how it was copied, and the source's pause.
    home_copy: HomeCopy | None = None


DaemonStatus = Literal["ready", "stopping"]


class DaemonStatusReported(_Event, tag=EventKind.DAEMON_STATUS_REPORTED.value, kw_only=True):
    status: DaemonStatus
    version: str
    git_sha: str | None = None
    #: Unique per daemon process start, so each boot's report is a distinct event.
    boot_id: str


class RepoConflict(msgspec.Struct, rename="camel", kw_only=True):
    """A repo that did not reach a machine (its checkout path), and why."""

    path: str
    reason: str


class SetupPushed(_Event, tag=EventKind.SETUP_PUSHED.value, kw_only=True):
    env_path: str
    env_bytes: int
    #: The repos in place on the machine...
    repo_paths: list[str]
    #: ...and those whose clone failed: the machine goes on without them, each a warning on it
    #: (``setupWarning``) until a later setup or repo change puts it in place.
    not_cloned: list[RepoConflict] = []


class MachineReady(_Event, tag=EventKind.READY.value, kw_only=True):
    pass


class MachineFailed(_Event, tag=EventKind.FAILED.value, kw_only=True):
    #: The pipeline stage that gave up: provision, boot, setup, probe.
    stage: str
    reason: str


class MachineArchived(_Event, tag=EventKind.ARCHIVED.value, kw_only=True):
    """The machine is archiving (its status says so already): the provisioner revokes its
    access, ends its processes and removes its files."""

    reason: str


class MachineFilesRemoved(_Event, tag=EventKind.FILES_REMOVED.value, kw_only=True):
    """An archiving machine's processes have exited and its files are gone: its status is
    ``archived`` now."""

    #: The archive's reason.
    reason: str


class MachineStopped(_Event, tag=EventKind.STOPPED.value, kw_only=True):
    """The machine is stopping (its status says so already): the provisioner ends its
    processes (or its container) and keeps its home. Also the first step of a failed machine's
    start (its ``machine.started`` follows at once)."""

    #: Why: "stopped by request", "idle for 900 s", "started by request: ending what is left
    #: of the failed machine first".
    reason: str


class MachineProcessesEnded(_Event, tag=EventKind.PROCESSES_ENDED.value, kw_only=True):
    """Every process of a stopping machine has exited (its container too): its status is
    ``stopped`` now, and nothing of it runs."""

    #: The stop's reason.
    reason: str


class MachineStarted(_Event, tag=EventKind.STARTED.value, kw_only=True):
    """A stopped (or failed) machine is booting again: the provisioner starts the same machine
    (same id, same home); the pipeline then runs from its daemon's ready report as after a
    create."""

    reason: str
    #: What started it: ``request`` (machines.start), or the call that woke it.
    by: WakeBy = WakeBy.REQUEST


class MachinePauseRequested(_Event, tag=EventKind.PAUSE_REQUESTED.value, kw_only=True):
    """The machine is pausing (its status says so already): the provisioner writes its memory
    and processes to disk and ends its sandbox."""

    reason: str
    #: Who asked: ``request`` (machines.pause), ``idle`` (auto-stop) or ``memory-pressure``.
    by: PauseBy = PauseBy.REQUEST


class MachinePaused(_Event, tag=EventKind.PAUSED.value, kw_only=True):
    """A pausing machine is on disk and its sandbox gone: its status is ``paused`` now."""

    #: The size of its memory image on disk.
    bytes: int
    #: How long the pause took (the checkpoint and the sandbox's end).
    duration_ms: float
    #: Who asked for it (its ``machine.pause-requested``'s ``by``).
    by: PauseBy = PauseBy.REQUEST


class MachinePauseRefused(_Event, tag=EventKind.PAUSE_REFUSED.value, kw_only=True):
    """A pause refused before the machine's sandbox was touched (a TCP connection of its own
    that the checkpoint cannot keep): it runs on, its status ``ready`` again."""

    reason: str


class MachineResumeRequested(_Event, tag=EventKind.RESUME_REQUESTED.value, kw_only=True):
    """The machine is resuming (its status says so already): the provisioner restores it."""

    #: What asked: ``request`` (machines.resume), or the call that woke it.
    by: WakeBy


class MachineResumed(_Event, tag=EventKind.RESUMED.value, kw_only=True):
    """A resuming machine's sandbox is restored, its processes where they were, and its daemon
    answers: its status is ``ready`` now."""

    #: From the resume's start to its daemon's answer.
    duration_ms: float
    by: WakeBy


class MachineUnresponsive(_Event, tag=EventKind.UNRESPONSIVE.value, kw_only=True):
    #: When the last heartbeat arrived (None: none since the prober started watching).
    last_heartbeat_at: datetime | None
    reason: str


class MachineLost(_Event, tag=EventKind.LOST.value, kw_only=True):
    """The machine's host missed its heartbeats for ``FLEET_HOST_LOST_AFTER_S``: the machine
    is out of reach until its host comes back (its heartbeats make it ready again), or is
    replaced by ``machines.rebuild`` on a live host."""

    host_id: str
    #: "its host host-3 is lost: no heartbeat from it for 31s"
    reason: str


class MachineEgressDenied(_Event, tag=EventKind.EGRESS_DENIED.value, kw_only=True):
    """The machine's instance's network policy refused something it tried: a name (DNS: its
    resolver answered NXDOMAIN, or REFUSED for an answer pointing at a loopback, link-local
    or platform address) or a connection. At most a few per machine per window: ``dropped``
    says how many refusals since the last event were not sent as one."""

    #: The address refused, or the name's (empty for a name refused before any lookup).
    destination: str
    #: The destination port (0: a name, or a protocol without ports).
    port: int = 0
    #: The DNS name asked for, if a name was refused.
    name: str = ""
    #: "denied" (the policy), "rebinding" (an allowed name pointing where it may not),
    #: "rate-limited" (a query past the machine's cap on its resolver: answered REFUSED).
    reason: str
    dropped: int = 0


class MachineSecretUsed(_Event, tag=EventKind.SECRET_USED.value, kw_only=True):
    """The machine's first request that the egress proxy sent on with one of its instance's
    secrets added (later ones are only counted: ``secrets.list``). Never the value."""

    #: The secret's name (``repo:<path>`` for a private repo's credentials).
    secret: str
    #: The ``host:port`` of the CONNECT the request came through (``[v6]:port``).
    host: str


class EnvPushed(_Event, tag=EventKind.ENV_PUSHED.value, kw_only=True):
    """A changed env reached a running machine's .env (its size and sha256 as written)."""

    env_path: str
    env_bytes: int
    env_sha256: str


class ReposReconciled(_Event, tag=EventKind.REPOS_RECONCILED.value, kw_only=True):
    """What reconciling a running machine's checkouts with its instance's repos did. Nothing
    is ever deleted: a removed repo's checkout stays and is listed in ``left_in_place``."""

    cloned: list[str]
    switched: list[str]
    unchanged: list[str]
    #: A branch change that was not applied (a dirty work tree, a failed fetch), and why.
    conflicts: list[RepoConflict]
    left_in_place: list[str]


class _ConfigEvent(_BaseEvent, kw_only=True):
    #: None: the platform's configuration (every instance).
    instance_id: str | None


class EnvChanged(_ConfigEvent, tag=ConfigKind.ENV_CHANGED.value, kw_only=True):
    """env.set / env.unset changed a variable; the setup pusher pushes the new .env."""

    name: str


class LifecycleRan(_Event, tag=EventKind.LIFECYCLE_RAN.value, kw_only=True):
    """One devcontainer lifecycle command ended in the machine (environments/lifecycle_commands.py):
    a non-zero exit code fails the machine at a stage named ``stage``."""

    #: onCreateCommand, updateContentCommand, postCreateCommand, postStartCommand, ...
    stage: str
    #: The command as the file gave it (``name: command`` for one of an object's).
    command: str
    exit_code: int
    timed_out: bool = False
    #: The output's last lines (stdout then stderr), at most ``LIFECYCLE_OUTPUT_MAX`` chars.
    output: str


#: How much of a lifecycle command's output its event carries (the event's size cap).
LIFECYCLE_OUTPUT_MAX = 8 * 1024
#: An output event (``lifecycle-output``, ``environment-build-output``) carries at most this
#: many bytes of lines, and one build's or command's come at most once per
#: ``OUTPUT_INTERVAL_S`` (and once more at its end).
OUTPUT_LINES_MAX_BYTES = 8 * 1024
OUTPUT_INTERVAL_S = 0.5


class LifecycleOutput(_Event, tag=EventKind.LIFECYCLE_OUTPUT.value, kw_only=True):
    """Lines a devcontainer lifecycle command printed (stdout and stderr, as read), while it
    runs; its ``lifecycle-ran`` comes after the last of them."""

    stage: str
    #: As ``LifecycleRan.command``.
    command: str
    lines: list[str]
    #: Lines printed before these that no event carries (more than one event holds within
    #: ``OUTPUT_INTERVAL_S``).
    dropped: int = 0


class EnvironmentBuildOutput(_Event, tag=EventKind.ENVIRONMENT_BUILD_OUTPUT.value, kw_only=True):
    """Lines of the build log of the machine's environment, while it builds. Machines that
    share one build each get its lines (one joining late starts with its last lines)."""

    lines: list[str]
    #: As ``LifecycleOutput.dropped``.
    dropped: int = 0


class ReposChanged(_ConfigEvent, tag=ConfigKind.REPOS_CHANGED.value, kw_only=True):
    """repos.add / repos.remove changed an instance's repos; running machines reconcile."""

    path: str


class Heartbeat(msgspec.Struct, rename="camel", kw_only=True):
    """Not an event (never stored): the daemon's periodic "still here"."""

    machine_id: str
    boot_id: str
    seq: int
    sent_at: datetime = msgspec.field(default_factory=now)


MachineEvent = (
    MachineCreated
    | MachineProvisioned
    | DaemonStatusReported
    | SetupPushed
    | MachineReady
    | MachineFailed
    | MachineArchived
    | MachineFilesRemoved
    | MachineUnresponsive
    | EnvPushed
    | ReposReconciled
    | MachineStopped
    | MachineProcessesEnded
    | MachineStarted
    | MachinePauseRequested
    | MachinePaused
    | MachinePauseRefused
    | MachineResumeRequested
    | MachineResumed
    | MachineLost
    | MachineEgressDenied
    | LifecycleRan
    | LifecycleOutput
    | EnvironmentBuildOutput
    | MachineSecretUsed
)
#: Events about a configuration scope (an instance or the platform), not one machine.
ConfigEvent = EnvChanged | ReposChanged
AnyEvent = MachineEvent | ConfigEvent

#: Every event in the stream. (``Event`` stays the name of the machine events, which most code
#: handles; ``AnyEvent`` adds the configuration events.)
Event = MachineEvent
_DECODER: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
_MACHINE_DECODER: msgspec.json.Decoder[MachineEvent] = msgspec.json.Decoder(MachineEvent)
_ENCODER = msgspec.json.Encoder()


def decode_event(data: bytes) -> AnyEvent:
    return _DECODER.decode(data)


def decode_machine_event(data: bytes) -> MachineEvent:
    """A machine event (what ``machine.>`` carries); a configuration event is a DecodeError."""
    return _MACHINE_DECODER.decode(data)


def encode_event(event: AnyEvent) -> bytes:
    return _ENCODER.encode(event)


def kind_of(event: MachineEvent) -> EventKind:
    return EventKind(str(type(event).__struct_config__.tag))


def kind_of_class(cls: type[_BaseEvent]) -> EventKind | ConfigKind:
    """The kind (and so the subjects) of every event of class ``cls``."""
    tag = str(cls.__struct_config__.tag)
    return ConfigKind(tag) if issubclass(cls, _ConfigEvent) else EventKind(tag)


def subject_of(event: AnyEvent) -> str:
    if isinstance(event, EnvChanged | ReposChanged):
        kind = ConfigKind(str(type(event).__struct_config__.tag))
        return subjects.config_event(kind, event.instance_id)
    return subjects.event(kind_of(event), event.machine_id)


def matches_subject(event: AnyEvent, subject: str) -> bool:
    """Whether ``event`` says what its subject allows it to say: its kind and its machine
    (or, for a configuration event, its scope).

    NATS permissions let a machine publish only on its own status subject, but the payload is
    the machine's to write: one naming another machine, or of another kind, is a forgery.
    Everything that trusts an event from the stream checks this first."""
    return subject_of(event) == subject


def scope_of(event: AnyEvent) -> dict[str, str | None]:
    """What a log line about ``event`` is about: its machine, or its configuration scope."""
    if isinstance(event, EnvChanged | ReposChanged):
        return {"instance_id": event.instance_id or subjects.PLATFORM_SCOPE}
    return {"machine_id": event.machine_id}
