"""The OpenRPC documents generated from contracts/ against the official OpenRPC meta-schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from contracts.daemon.rpc import DAEMON_METHODS
from contracts.errors import ERRORS
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import MethodSpec
from contracts.rpc.openrpc import openrpc_document
from tests.schemas import openrpc_validator, problems

TABLES = {"gateway": GATEWAY_METHODS, "daemon": DAEMON_METHODS}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return openrpc_validator()


@pytest.mark.parametrize("table", sorted(TABLES))
def test_document_validates_against_the_meta_schema(
    validator: jsonschema.Draft7Validator, table: str
) -> None:
    doc = openrpc_document(TABLES[table], title=table, version="1", server_url="http://gw/rpc")
    assert problems(validator, doc) == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("openrpc",), "0.9"),
        (("methods", 0, "errors"), [{"code": "1004", "message": "NotFound"}]),
        (("methods", 0, "params", 0, "schema", "type"), 5),
        (("methods", 0, "paramStructure"), "by-magic"),
    ],
)
def test_the_validator_catches_a_broken_document(
    validator: jsonschema.Draft7Validator, where: tuple[str | int, ...], value: Any
) -> None:
    # Guards the vendored meta-schema and its references: a validator that passes everything
    # would make the test above worthless. One method's document, valid until broken: the whole
    # table's takes a tenth of a second to validate, each case.
    doc = openrpc_document(GATEWAY_METHODS[:1], title="t", version="1")
    assert problems(validator, doc) == []
    node: Any = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert problems(validator, doc)


def spec_id(spec: MethodSpec) -> str:
    return spec.name


@pytest.mark.parametrize("spec", GATEWAY_METHODS + DAEMON_METHODS, ids=spec_id)
def test_each_method_lists_its_errors_with_their_codes(spec: MethodSpec) -> None:
    doc = openrpc_document([spec], title="t", version="1")
    errors = doc["methods"][0]["errors"]
    assert errors == [{"code": e.code, "message": e.__name__} for e in spec.errors]
    codes = [e["code"] for e in errors]
    assert len(codes) == len(set(codes)), f"{spec.name} lists an error twice"
    for entry in errors:  # a code the error table does not know could not be decoded by clients
        assert ERRORS[entry["code"]].__name__ == entry["message"]


def test_the_error_catalog_lists_every_code() -> None:
    doc = openrpc_document(GATEWAY_METHODS, title="t", version="1")
    catalog = doc["components"]["errors"]
    assert {e["code"]: name for name, e in catalog.items()} == {
        code: cls.__name__ for code, cls in ERRORS.items()
    }
