"""The TypeScript SDK's types (sdk/typescript/src/generated.ts): generated from the OpenRPC and
AsyncAPI documents and the error table, committed up to date, one entry per method."""

from __future__ import annotations

import re

from codegen.generated import REGENERATE
from codegen.tstypes import MODULE_PATH, render
from contracts.bus.subjects import EventKind
from contracts.errors import ERRORS, RETRYABLE
from contracts.gateway.rpc import GATEWAY_METHODS


def test_committed_module_is_up_to_date() -> None:
    committed = MODULE_PATH.read_text() if MODULE_PATH.exists() else ""
    assert committed == render(), (
        f"{MODULE_PATH.name} differs from contracts/: regenerate it with `{REGENERATE}` "
        "and commit the result"
    )


def _block(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_every_method_has_typed_params_and_result() -> None:
    text = render()
    table = _block(text, "export interface Methods {", "\n}\n")
    typed = re.findall(r'^  "([^"]+)": \{ params: \w+; result: \w+ \};$', table, re.M)
    names = _block(text, "export const METHOD_NAMES = [", "] as const")
    listed = re.findall(r'^  "([^"]+)",$', names, re.M)
    expected = [m.name for m in GATEWAY_METHODS]
    assert typed == expected
    assert listed == expected


def test_the_event_union_has_every_machine_event() -> None:
    text = render()
    union = _block(text, "export type FleetEvent =", ";\n")
    members = re.findall(r"\| (\w+)", union)
    assert len(members) == len(EventKind)
    for member in members:
        decl = _block(text, f"export interface {member} {{", "\n}\n")
        assert re.search(r'^  type: "[a-z-]+";$', decl, re.M), member
        assert "  eventId: string;" in decl
        assert "  machineId: string;" in decl


def test_the_error_table_is_the_contract() -> None:
    rows = re.findall(
        r'^  "(-?\d+)": \{ name: "(\w+)", httpStatus: (\d+), retryable: (true|false) \},$',
        render(),
        re.M,
    )
    assert {
        int(code): (name, int(status), retry == "true") for code, name, status, retry in rows
    } == {code: (cls.__name__, cls.http_status, code in RETRYABLE) for code, cls in ERRORS.items()}
