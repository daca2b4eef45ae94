"""Machine events: JSON on ``machine.<kind>.<machineId>``, stored in the JetStream stream.

Every event carries ``type`` (its kind), ``eventId``, ``machineId`` and ``occurredAt``. Decode
any of them with ``decode_event``; ``subject_of`` gives the subject an event is published on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import msgspec

from contracts import subjects
from contracts.subjects import EventKind


def now() -> datetime:
    return datetime.now(UTC)


class _Event(msgspec.Struct, rename="camel", kw_only=True, tag_field="type", omit_defaults=False):
    event_id: str
    machine_id: str
    occurred_at: datetime = msgspec.field(default_factory=now)


class MachineCreated(_Event, tag=EventKind.CREATED.value, kw_only=True):
    instance_id: str
    provider: str


class MachineProvisioned(_Event, tag=EventKind.PROVISIONED.value, kw_only=True):
    provider: str
    external_id: str


DaemonStatus = Literal["ready", "stopping"]


class DaemonStatusReported(_Event, tag=EventKind.DAEMON_STATUS_REPORTED.value, kw_only=True):
    status: DaemonStatus
    version: str
    git_sha: str | None = None
    #: Unique per daemon process start, so each boot's report is a distinct event.
    boot_id: str


class SetupPushed(_Event, tag=EventKind.SETUP_PUSHED.value, kw_only=True):
    env_path: str
    env_bytes: int
    repo_paths: list[str]


class MachineReady(_Event, tag=EventKind.READY.value, kw_only=True):
    pass


class MachineFailed(_Event, tag=EventKind.FAILED.value, kw_only=True):
    #: The pipeline stage that gave up: provision, boot, setup, probe.
    stage: str
    reason: str


class MachineArchived(_Event, tag=EventKind.ARCHIVED.value, kw_only=True):
    reason: str


class MachineUnresponsive(_Event, tag=EventKind.UNRESPONSIVE.value, kw_only=True):
    #: When the last heartbeat arrived (None: none since the prober started watching).
    last_heartbeat_at: datetime | None
    reason: str


class Heartbeat(msgspec.Struct, rename="camel", kw_only=True):
    """Not an event (never stored): the daemon's periodic "still here"."""

    machine_id: str
    boot_id: str
    seq: int
    sent_at: datetime = msgspec.field(default_factory=now)


Event = (
    MachineCreated
    | MachineProvisioned
    | DaemonStatusReported
    | SetupPushed
    | MachineReady
    | MachineFailed
    | MachineArchived
    | MachineUnresponsive
)

_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_ENCODER = msgspec.json.Encoder()


def decode_event(data: bytes) -> Event:
    return _DECODER.decode(data)


def encode_event(event: Event) -> bytes:
    return _ENCODER.encode(event)


def kind_of(event: Event) -> EventKind:
    return kind_of_class(type(event))


def kind_of_class(cls: type[_Event]) -> EventKind:
    """The kind (and so the subjects) of every event of class ``cls``."""
    return EventKind(str(cls.__struct_config__.tag))


def subject_of(event: Event) -> str:
    return subjects.event(kind_of(event), event.machine_id)


def matches_subject(event: Event, subject: str) -> bool:
    """Whether ``event`` says what its subject allows it to say: its kind and its machine.

    NATS permissions let a machine publish only on its own status subject, but the payload is
    the machine's to write: one naming another machine, or of another kind, is a forgery.
    Everything that trusts an event from the stream checks this first."""
    return subject_of(event) == subject
