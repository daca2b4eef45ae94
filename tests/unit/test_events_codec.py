"""Machine events on the wire, their subjects, and derived event ids."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from contracts import ids
from contracts.bus.events import (
    DaemonStatusReported,
    EnvChanged,
    EnvironmentBuildOutput,
    EnvPushed,
    Event,
    LifecycleOutput,
    LifecycleRan,
    MachineArchived,
    MachineCreated,
    MachineEgressDenied,
    MachineFailed,
    MachineFilesRemoved,
    MachineLost,
    MachinePaused,
    MachinePauseRefused,
    MachinePauseRequested,
    MachineProcessesEnded,
    MachineProvisioned,
    MachineReady,
    MachineResumed,
    MachineResumeRequested,
    MachineSecretUsed,
    MachineStarted,
    MachineStopped,
    MachineUnresponsive,
    PauseBy,
    RepoConflict,
    ReposChanged,
    ReposReconciled,
    SetupPushed,
    decode_event,
    decode_machine_event,
    encode_event,
    kind_of,
    subject_of,
)
from contracts.bus.subjects import EventKind

AT = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
MID = "m-0123456789abcdef"

SAMPLES: list[Event] = [
    MachineCreated(
        event_id="e1", machine_id=MID, occurred_at=AT, instance_id="i-00", provider="local"
    ),
    MachineProvisioned(
        event_id="e2", machine_id=MID, occurred_at=AT, provider="local", external_id="pid:42"
    ),
    DaemonStatusReported(
        event_id="e3",
        machine_id=MID,
        occurred_at=AT,
        status="ready",
        version="0.1.0",
        git_sha="abc123",
        boot_id="b-1",
    ),
    DaemonStatusReported(
        event_id="e3b",
        machine_id=MID,
        occurred_at=AT,
        status="stopping",
        version="0.1.0",
        boot_id="b-2",
    ),
    SetupPushed(
        event_id="e4",
        machine_id=MID,
        occurred_at=AT,
        env_path="~/.fleet/.env",
        env_bytes=120,
        repo_paths=["src/app", "lib"],
    ),
    MachineReady(event_id="e5", machine_id=MID, occurred_at=AT),
    MachineFailed(
        event_id="e6", machine_id=MID, occurred_at=AT, stage="setup", reason="clone failed"
    ),
    MachineArchived(event_id="e7", machine_id=MID, occurred_at=AT, reason="rebuilt"),
    MachineUnresponsive(
        event_id="e8", machine_id=MID, occurred_at=AT, last_heartbeat_at=AT, reason="quiet"
    ),
    EnvPushed(
        event_id="e9",
        machine_id=MID,
        occurred_at=AT,
        env_path="/h/.fleet/.env",
        env_bytes=9,
        env_sha256="0" * 64,
    ),
    ReposReconciled(
        event_id="e10",
        machine_id=MID,
        occurred_at=AT,
        cloned=["a"],
        switched=["b"],
        unchanged=[],
        conflicts=[RepoConflict(path="c", reason="dirty")],
        left_in_place=["d"],
    ),
    MachineStopped(event_id="e11", machine_id=MID, occurred_at=AT, reason="idle for 900 s"),
    MachineProcessesEnded(event_id="e11b", machine_id=MID, occurred_at=AT, reason="idle for 900 s"),
    MachineFilesRemoved(event_id="e11c", machine_id=MID, occurred_at=AT, reason="archived"),
    MachineStarted(event_id="e12", machine_id=MID, occurred_at=AT, reason="started by request"),
    MachinePauseRequested(
        event_id="e12a", machine_id=MID, occurred_at=AT, reason="paused", by=PauseBy.MEMORY_PRESSURE
    ),
    MachinePaused(
        event_id="e12b",
        machine_id=MID,
        occurred_at=AT,
        bytes=268435456,
        duration_ms=1450.5,
        by=PauseBy.IDLE,
    ),
    MachinePauseRefused(event_id="e12e", machine_id=MID, occurred_at=AT, reason="refused"),
    MachineResumeRequested(event_id="e12c", machine_id=MID, occurred_at=AT, by="request"),
    MachineResumed(
        event_id="e12d", machine_id=MID, occurred_at=AT, duration_ms=310.0, by="request"
    ),
    MachineLost(
        event_id="e13",
        machine_id=MID,
        occurred_at=AT,
        host_id="host-3",
        reason="its host host-3 is lost: no heartbeat from it for 31s",
    ),
    MachineEgressDenied(
        event_id="e14",
        machine_id=MID,
        occurred_at=AT,
        destination="",
        name="evil.example",
        reason="denied",
        dropped=3,
    ),
    LifecycleRan(
        event_id="e15",
        machine_id=MID,
        occurred_at=AT,
        stage="postCreateCommand",
        command="npm ci",
        exit_code=1,
        output="npm ERR! missing script",
    ),
    LifecycleOutput(
        event_id="e16",
        machine_id=MID,
        occurred_at=AT,
        stage="postCreateCommand",
        command="npm ci",
        lines=["added 12 packages", ""],
        dropped=2,
    ),
    EnvironmentBuildOutput(
        event_id="e17", machine_id=MID, occurred_at=AT, lines=["Step 1/3 : FROM base"]
    ),
    MachineSecretUsed(
        event_id="e18",
        machine_id=MID,
        occurred_at=AT,
        secret="OPENAI_API_KEY",
        host="api.openai.com:443",
    ),
]

CAMEL_FIELDS: dict[type, set[str]] = {
    MachineCreated: {"instanceId", "provider", "forkOf", "fromSnapshot", "memoryImage"},
    MachineProvisioned: {"provider", "externalId", "homeCopy"},
    DaemonStatusReported: {"status", "version", "gitSha", "bootId"},
    SetupPushed: {"envPath", "envBytes", "repoPaths", "notCloned"},
    MachineReady: set(),
    MachineFailed: {"stage", "reason"},
    MachineArchived: {"reason"},
    MachineUnresponsive: {"lastHeartbeatAt", "reason"},
    EnvPushed: {"envPath", "envBytes", "envSha256"},
    ReposReconciled: {"cloned", "switched", "unchanged", "conflicts", "leftInPlace"},
    MachineStopped: {"reason"},
    MachineProcessesEnded: {"reason"},
    MachineFilesRemoved: {"reason"},
    MachineStarted: {"reason", "by"},
    MachinePauseRequested: {"reason", "by"},
    MachinePaused: {"bytes", "durationMs", "by"},
    MachinePauseRefused: {"reason"},
    MachineResumeRequested: {"by"},
    MachineResumed: {"durationMs", "by"},
    MachineLost: {"hostId", "reason"},
    MachineEgressDenied: {"destination", "port", "name", "reason", "dropped"},
    LifecycleRan: {"stage", "command", "exitCode", "timedOut", "output"},
    LifecycleOutput: {"stage", "command", "lines", "dropped"},
    EnvironmentBuildOutput: {"lines", "dropped"},
    MachineSecretUsed: {"secret", "host"},
}


def sample_id(event: Event) -> str:
    return event.event_id


def test_samples_cover_every_event_type() -> None:
    assert {type(e) for e in SAMPLES} == set(typing.get_args(Event))


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_event_round_trips(event: Event) -> None:
    decoded = decode_event(encode_event(event))
    assert type(decoded) is type(event)
    assert decoded == event


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_wire_fields_are_camel_case(event: Event) -> None:
    wire = json.loads(encode_event(event))
    common = {"type", "eventId", "machineId", "occurredAt"}
    assert set(wire) == common | CAMEL_FIELDS[type(event)]
    assert wire["eventId"] == event.event_id
    assert wire["machineId"] == MID
    assert wire["type"] == kind_of(event).value


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_subject_is_machine_kind_id(event: Event) -> None:
    assert subject_of(event) == f"machine.{kind_of(event).value}.{MID}"


def test_each_event_type_has_its_own_kind() -> None:
    kinds = {type(e): kind_of(e) for e in SAMPLES}
    assert sorted(kinds.values()) == sorted(EventKind)


def test_configuration_events_are_on_config_kind_scope() -> None:
    env = EnvChanged(event_id="c1", occurred_at=AT, instance_id="i-0123456789abcdef", name="A")
    repos = ReposChanged(event_id="c2", occurred_at=AT, instance_id=None, path="src")
    assert subject_of(env) == "config.env-changed.i-0123456789abcdef"
    assert subject_of(repos) == "config.repos-changed.platform"
    for event in (env, repos):
        assert decode_event(encode_event(event)) == event
        assert "machineId" not in json.loads(encode_event(event))
    with pytest.raises(msgspec.ValidationError):  # not a machine event: the CLI's decoder says so
        decode_machine_event(encode_event(env))


def test_occurred_at_is_an_aware_timestamp_on_the_wire() -> None:
    wire = json.loads(encode_event(SAMPLES[0]))
    assert datetime.fromisoformat(wire["occurredAt"]) == AT


def test_occurred_at_in_another_timezone_is_the_same_instant() -> None:
    plus2 = AT.astimezone(timezone(timedelta(hours=2)))
    event = MachineReady(event_id="e", machine_id=MID, occurred_at=plus2)
    assert decode_event(encode_event(event)).occurred_at == AT


def test_occurred_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = MachineReady(event_id="e", machine_id=MID)
    after = datetime.now(UTC)
    assert event.occurred_at.tzinfo is not None
    assert before <= event.occurred_at <= after


def test_decodes_an_event_written_by_another_producer() -> None:
    data = json.dumps(
        {
            "type": "failed",
            "eventId": "x1",
            "machineId": MID,
            "occurredAt": "2024-01-02T03:04:05.123456Z",
            "stage": "probe",
            "reason": "timed out",
        }
    ).encode()
    assert decode_event(data) == MachineFailed(
        event_id="x1", machine_id=MID, occurred_at=AT, stage="probe", reason="timed out"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"{",
        b"[]",
        b"null",
        b"{}",
        b'{"type": "exploded", "eventId": "e", "machineId": "m"}',
        b'{"type": "ready", "machineId": "m"}',
        b'{"type": "ready", "event_id": "e", "machine_id": "m"}',
        b'{"type": "daemon-status-reported", "eventId": "e", "machineId": "m",'
        b' "status": "booting", "version": "1", "bootId": "b"}',
        b'{"type": "setup-pushed", "eventId": "e", "machineId": "m", "envPath": "p",'
        b' "envBytes": "many", "repoPaths": []}',
    ],
)
def test_decode_event_refuses_garbage(data: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(data)


# --- ids ----------------------------------------------------------------------------------------
def test_derived_event_id_is_deterministic() -> None:
    assert ids.derived_event_id("cause-1", "provisioned") == ids.derived_event_id(
        "cause-1", "provisioned"
    )


def test_derived_event_id_differs_by_kind() -> None:
    assert ids.derived_event_id("cause-1", "provisioned") != ids.derived_event_id(
        "cause-1", "failed"
    )


def test_derived_event_id_differs_by_cause() -> None:
    assert ids.derived_event_id("cause-1", "ready") != ids.derived_event_id("cause-2", "ready")


def test_derived_event_ids_are_unique_across_kinds_and_causes() -> None:
    causes = [ids.new_event_id() for _ in range(20)]
    derived = {ids.derived_event_id(c, k.value) for c in causes for k in EventKind}
    assert len(derived) == len(causes) * len(EventKind)


def test_derived_event_id_has_the_event_id_format() -> None:
    derived = ids.derived_event_id("cause", "ready")
    assert len(derived) == 32
    assert set(derived) <= set("0123456789abcdef")
    assert derived != "cause"


def test_new_ids_match_their_formats() -> None:
    assert ids.MACHINE_ID_RE.match(ids.new_machine_id())
    assert ids.INSTANCE_ID_RE.match(ids.new_instance_id())
    assert ids.new_machine_id() != ids.new_machine_id()
    assert len(ids.new_event_id()) == 32


@pytest.mark.parametrize("fields", [{"type": "pause-requested", "reason": "paused by request"},
                                    {"type": "paused", "bytes": 1, "durationMs": 1.0}])  # fmt: skip
def test_a_pause_stored_before_it_said_who_asked_reads_as_asked_by_request(
    fields: dict[str, object],
) -> None:
    old = {"eventId": "e1", "machineId": MID, "occurredAt": "2024-01-01T00:00:00Z", **fields}
    got = decode_event(json.dumps(old).encode())
    assert isinstance(got, MachinePauseRequested | MachinePaused)
    assert got.by is PauseBy.REQUEST
