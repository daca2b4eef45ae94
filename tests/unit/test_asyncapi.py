"""The AsyncAPI document of the NATS subjects: generated from contracts/, committed, valid."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from codegen.asyncapi import DOCUMENT_PATH, render
from codegen.generated import REGENERATE
from contracts.bus import subjects
from contracts.bus.asyncapi import ASYNCAPI_VERSION, asyncapi_document
from contracts.bus.events import Heartbeat, MachineCreated, encode_event
from contracts.bus.subjects import EventKind
from contracts.daemon.rpc import DAEMON_METHODS
from tests.schemas import asyncapi_validator, problems


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    # Through JSON, as a reader of the committed file sees it.
    loaded: dict[str, Any] = json.loads(render(asyncapi_document()))
    return loaded


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_committed_document_is_up_to_date() -> None:
    generated = render(asyncapi_document())
    committed = DOCUMENT_PATH.read_text() if DOCUMENT_PATH.exists() else ""
    assert committed == generated, (
        f"{DOCUMENT_PATH.name} differs from contracts/: regenerate it with `{REGENERATE}` "
        "and commit the result"
    )


def test_document_validates_against_the_asyncapi_schema(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == ASYNCAPI_VERSION == "3.0.0"
    assert problems(asyncapi_validator(), doc) == []


def test_the_validator_catches_a_broken_document(doc: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(doc))
    broken["operations"]["send.daemon.rpc"]["action"] = "publish"  # AsyncAPI 2's word
    assert problems(asyncapi_validator(), broken)


def test_every_subject_pattern_has_a_channel(doc: dict[str, Any]) -> None:
    addresses = {c["address"] for c in doc["channels"].values()}
    mid = "{machineId}"
    expected = {subjects.event(kind, mid) for kind in EventKind}
    expected |= {subjects.heartbeat(mid), subjects.daemon_rpc(mid)}
    assert expected <= addresses
    # and the stream captures exactly the event channels
    events = {a.replace(mid, "*").replace("{scope}", "*") for a in addresses
              if a and a.startswith(("machine.", "config."))}  # fmt: skip
    assert events - {subjects.ALL_HEARTBEATS} == set(subjects.STREAM_SUBJECTS)


def test_every_channel_is_used_by_an_operation(doc: dict[str, Any]) -> None:
    used = set()
    for op in doc["operations"].values():
        used.add(op["channel"]["$ref"])
        if "reply" in op:
            used.add(op["reply"]["channel"]["$ref"])
    assert used == {f"#/channels/{name}" for name in doc["channels"]}


def test_every_reference_resolves_and_every_message_has_a_payload(doc: dict[str, Any]) -> None:
    for op in doc["operations"].values():
        channel = resolve(doc, op["channel"]["$ref"])
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            resolve(doc, ref["$ref"])
        assert channel["messages"], op
    for name, message in doc["components"]["messages"].items():
        assert "payload" in message, name
        if "$ref" in message["payload"]:
            resolve(doc, message["payload"]["$ref"])
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        resolve(doc, ref)


def test_payload_schemas_are_the_wire_format(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    created = schemas["MachineCreated"]
    assert set(created["required"]) >= {"type", "eventId", "machineId", "instanceId"}
    assert created["properties"]["type"] == {"enum": ["created"]}
    event = MachineCreated(event_id="e", machine_id="m", instance_id="i", provider="local")
    assert set(json.loads(encode_event(event))) == set(created["properties"])
    heartbeat = {f.encode_name for f in msgspec.structs.fields(Heartbeat)}
    assert set(schemas["Heartbeat"]["properties"]) == heartbeat == {
        "machineId", "bootId", "seq", "sentAt"
    }  # fmt: skip


def test_daemon_rpc_is_request_reply_for_every_method(doc: dict[str, Any]) -> None:
    op = doc["operations"]["send.daemon.rpc"]
    assert op["action"] == "send"
    assert op["reply"]["address"] == {"location": "$message.header#/replyTo"}
    requests = [resolve(doc, r["$ref"]) for r in op["messages"]]
    replies = [resolve(doc, r["$ref"]) for r in op["reply"]["messages"]]
    names = [spec.name for spec in DAEMON_METHODS]
    assert [resolve(doc, m["$ref"])["name"] for m in requests] == names
    assert len(replies) == len(names)
    for spec, ref in zip(DAEMON_METHODS, requests, strict=True):
        message = resolve(doc, ref["$ref"])
        params = message["payload"]["properties"]["params"]["$ref"]
        assert params.rsplit("/", 1)[1] == spec.params.__name__
        assert "Fleet-Signature" in message["headers"]["required"]
