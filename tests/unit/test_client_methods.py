"""The client cannot drift from the contract: every gateway method has a FleetClient method that
calls it, with the contract's result type and only the contract's parameter names."""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass

import msgspec
import pytest

from contracts.gateway_rpc import GATEWAY_METHODS
from contracts.jsonrpc import MethodSpec
from fleet import client

SPECS = {spec.name: spec for spec in GATEWAY_METHODS}


@dataclass
class Call:
    """One ``self.call("method", params, ResultType)`` inside a FleetClient method."""

    function: str
    method: str
    result_type: str
    #: String keys of the dict literals in the calling function: the params it sends.
    param_names: set[str]


def _client_calls() -> list[Call]:
    tree = ast.parse(inspect.getsource(client.FleetClient))
    calls = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.AsyncFunctionDef):
            continue
        keys = {
            k.value
            for d in ast.walk(fn)
            if isinstance(d, ast.Dict)
            for k in d.keys
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        }
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self"
            ):
                method = node.args[0]
                assert isinstance(method, ast.Constant), f"{fn.name}: method name not a literal"
                assert isinstance(method.value, str)
                calls.append(Call(fn.name, method.value, ast.unparse(node.args[2]), keys))
    return calls


CALLS = _client_calls()


def _wire_fields(spec: MethodSpec) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(spec.params)}


def test_every_gateway_method_has_a_client_method() -> None:
    called = {c.method for c in CALLS}
    assert sorted(set(SPECS) - called) == [], "gateway methods the client cannot call"
    assert sorted(called - set(SPECS)) == [], "client calls to methods the gateway lacks"


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.method)
def test_client_method_matches_its_contract(call: Call) -> None:
    spec = SPECS[call.method]
    expected = spec.result.__name__ if isinstance(spec.result, type) else repr(spec.result)
    assert call.result_type in (expected, repr(spec.result).replace("typing.", "")), call
    unknown = call.param_names - _wire_fields(spec)
    assert not unknown, f"{call.function} sends {sorted(unknown)} to {call.method}"
    assert callable(getattr(client.FleetClient, call.function))


def test_machine_helper_covers_the_per_machine_methods() -> None:
    per_machine = {
        "exec",
        "write_file",
        "start_process",
        "kill_process",
        "process_logs",
        "refresh_code",
    }
    handle = client.MachineHandle
    missing = [name for name in per_machine if not callable(getattr(handle, name, None))]
    assert missing == []
    for name in ("get", "wait_ready", "processes", "archive", "events"):
        assert callable(getattr(handle, name))
