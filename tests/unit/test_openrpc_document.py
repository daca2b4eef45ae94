"""The OpenRPC document generated from the gateway's method table."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from contracts.daemon.rpc import DAEMON_METHODS
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import MethodSpec
from contracts.rpc.openrpc import OPENRPC_VERSION, method_type_name, openrpc_document


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openrpc_document(GATEWAY_METHODS, title="fleetd gateway", version="0.1.0")


def method(doc: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [m for m in doc["methods"] if m["name"] == name]
    assert len(matches) == 1
    return matches[0]


def spec_id(spec: MethodSpec) -> str:
    return spec.name


def test_header(doc: dict[str, Any]) -> None:
    assert doc["openrpc"] == OPENRPC_VERSION
    assert doc["info"] == {
        "title": "fleetd gateway",
        "version": "0.1.0",
        "license": {"name": "Apache-2.0"},
    }
    assert "servers" not in doc


def test_server_url_is_listed_when_given() -> None:
    doc = openrpc_document(GATEWAY_METHODS, title="t", version="1", server_url="https://gw/rpc")
    assert doc["servers"] == [{"name": "gateway", "url": "https://gw/rpc"}]


def test_document_is_json(doc: dict[str, Any]) -> None:
    assert json.loads(json.dumps(doc)) == doc


def test_one_entry_per_method_in_table_order(doc: dict[str, Any]) -> None:
    names = [m["name"] for m in doc["methods"]]
    assert names == [spec.name for spec in GATEWAY_METHODS]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("spec", GATEWAY_METHODS, ids=spec_id)
def test_params_match_the_struct(doc: dict[str, Any], spec: MethodSpec) -> None:
    entry = method(doc, spec.name)
    fields = msgspec.structs.fields(spec.params)
    # Required params first (the OpenRPC spec's MUST), each group in declaration order.
    expected = [(f.encode_name, True) for f in fields if f.required]
    expected += [(f.encode_name, False) for f in fields if not f.required]
    assert [(p["name"], p["required"]) for p in entry["params"]] == expected
    assert entry["paramStructure"] == "by-name"
    assert entry["summary"] == spec.summary


@pytest.mark.parametrize("spec", GATEWAY_METHODS, ids=spec_id)
def test_param_names_are_camel_case_with_a_schema(doc: dict[str, Any], spec: MethodSpec) -> None:
    for param in method(doc, spec.name)["params"]:
        assert "_" not in param["name"]
        assert param["schema"], param["name"]


@pytest.mark.parametrize("spec", GATEWAY_METHODS, ids=spec_id)
def test_error_codes_match_the_spec(doc: dict[str, Any], spec: MethodSpec) -> None:
    errors = method(doc, spec.name)["errors"]
    assert errors == [{"code": e.code, "message": e.__name__} for e in spec.errors]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("instances.create", [("name", True)]),
        ("instances.list", []),
        ("env.set", [("name", True), ("value", True), ("instanceId", False)]),
        (
            "repos.add",
            [
                ("instanceId", True),
                ("url", True),
                ("branch", True),
                ("path", True),
                ("token", False),
                ("username", False),
            ],
        ),
        (
            "machines.create",
            [
                ("instanceId", True),
                ("provider", False),
                ("idempotencyKey", False),
                ("fromSnapshot", False),
                ("runtime", False),
            ],
        ),
        ("machines.get", [("machineId", True)]),
        (
            "machines.exec",
            [
                ("command", True),
                ("machineId", True),
                ("timeoutS", False),
                ("cwd", False),
                ("env", False),
                ("user", False),
            ],
        ),
    ],
)
def test_known_method_params(
    doc: dict[str, Any], name: str, params: list[tuple[str, bool]]
) -> None:
    assert [(p["name"], p["required"]) for p in method(doc, name)["params"]] == params


def test_known_error_codes(doc: dict[str, Any]) -> None:
    assert [e["code"] for e in method(doc, "machines.get")["errors"]] == [1004, 1003]
    # exec is forwarded to the daemon: its validation and tool errors are part of the contract;
    # as root, to the machine's host (gvisor machines only).
    assert [e["code"] for e in method(doc, "machines.exec")["errors"]] == [
        1004,
        1003,
        1009,
        1040,
        1502,
        1504,
        -32602,
        1700,
        1049,
        1601,
        1505,
    ]
    assert [e["code"] for e in method(doc, "machines.create")["errors"]] == [
        1004,
        1003,
        1009,
        1041,
        1022,
        1601,
    ]
    assert method(doc, "instances.create")["errors"] == []


def test_param_schemas_carry_constraints(doc: dict[str, Any]) -> None:
    params = {p["name"]: p["schema"] for p in method(doc, "machines.get")["params"]}
    assert params["machineId"]["type"] == "string"
    assert params["machineId"]["pattern"] == "^m-[0-9a-f]{16}$"


def test_result_refs_resolve_to_components(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for entry in doc["methods"]:
        result = entry["result"]
        assert result["name"] == "result"
        ref = result["schema"].get("$ref")
        if ref is not None:
            assert ref.startswith("#/components/schemas/")
            assert ref.rsplit("/", 1)[1] in schemas


@pytest.mark.parametrize("spec", GATEWAY_METHODS, ids=spec_id)
def test_component_required_list_agrees_with_param_flags(
    doc: dict[str, Any], spec: MethodSpec
) -> None:
    _, components = msgspec.json.schema_components([spec.params])
    struct = components[spec.params.__name__]
    required = {p["name"] for p in method(doc, spec.name)["params"] if p["required"]}
    assert set(struct.get("required", [])) == required
    assert struct.get("additionalProperties") is False
    # Spelled out param by param, the struct itself is no component (it would be unused).
    assert spec.params.__name__ not in doc["components"]["schemas"]


def test_daemon_methods_also_render() -> None:
    doc = openrpc_document(DAEMON_METHODS, title="daemon", version="1")
    assert [m["name"] for m in doc["methods"]] == [s.name for s in DAEMON_METHODS]
    write = method(doc, "tool.writeFile")
    assert [(p["name"], p["required"]) for p in write["params"]] == [
        ("path", True),
        ("content", True),
        ("mode", False),
    ]


def test_no_optional_param_comes_before_a_required_one(doc: dict[str, Any]) -> None:
    for entry in doc["methods"]:
        flags = [p["required"] for p in entry["params"]]
        assert flags == sorted(flags, reverse=True), entry["name"]


def test_schema_names_and_titles_are_unique_and_clash_with_no_method_type(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]
    derived = {method_type_name(m["name"]) for m in doc["methods"]}
    titles = [s.get("title", name) for name, s in schemas.items()]
    assert len(set(titles)) == len(titles)
    assert not (set(schemas) | set(titles)) & derived
    assert method_type_name("machines.process.start") == "MachinesProcessStart"
    refs = json.dumps(doc).count('"#/components/schemas/EnvListResult"')
    assert refs == 1  # env.list's result, renamed, and its $ref followed
    assert "EnvListResult" in schemas
