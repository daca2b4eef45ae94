"""The client cannot drift from the contract: every gateway method has a FleetClient method that
calls it through its spec constant, building the spec's own params Struct with only its fields,
generated (``fleet/client/generated.py``) or hand-written (``fleet/client*.py``). (mypy checks
the rest: ``call(spec, params) -> R`` ties the params and result types to the spec.)"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass

import msgspec
import pytest

from contracts import ports
from contracts.gateway import (
    audit,
    code as gateway_code,
    codemode,
    desktop as gateway_desktop,
    env_builds as gateway_env_builds,
    environments as gateway_environments,
    files as gateway_files,
    fork as gateway_fork,
    hosts as gateway_hosts,
    limits as gateway_limits,
    live as gateway_live,
    machines as gateway_machines,
    metrics as gateway_metrics,
    network as gateway_network,
    people as gateway_people,
    rpc as gateway_rpc,
    runtime as gateway_runtime,
    secrets as gateway_secrets,
    sessions as gateway_sessions,
    ssh as gateway_ssh,
    stop as gateway_stop,
    webhooks as gateway_webhooks,
)
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import AnySpec, NoParams
from fleet.client import (
    calls as client_calls,
    client,
    generated as client_generated,
    streams as client_streams,
)

SPECS = {spec.name: spec for spec in GATEWAY_METHODS}
#: Where the spec constants live (codemode's are in their own module, listed in the table).
SPEC_MODULES = (
    gateway_rpc,
    gateway_live,
    gateway_machines,
    gateway_metrics,
    gateway_limits,
    gateway_network,
    gateway_hosts,
    gateway_env_builds,
    gateway_environments,
    gateway_env_builds,
    codemode,
    gateway_sessions,
    ports,
    gateway_ssh,
    gateway_files,
    gateway_stop,
    gateway_runtime,
    gateway_fork,
    gateway_people,
    audit,
    gateway_code,
    gateway_desktop,
    gateway_secrets,
    gateway_webhooks,
)
#: FleetClient's modules: the generated methods, and the hand-written ones bound to it.
CLIENT_MODULES = (client, client_calls, client_streams, client_generated)


@dataclass
class Call:
    """One ``self.call(g.SPEC, params)`` inside a FleetClient method."""

    function: str
    spec: AnySpec
    #: Params Structs the function builds (``new_params(g.X, ...)``, ``X(...)``), by class name,
    #: with the keyword names given to each.
    built: dict[str, set[str]]


def _name(node: ast.epr) -> str:
    """``g.X`` or ``X``: "X"."""
    if isinstance(node, ast.Attribute):
        return node.attr
    assert isinstance(node, ast.Name), ast.unparse(node)
    return node.id


def _built(fn: ast.AsyncFunctionDef) -> dict[str, set[str]]:
    built: dict[str, set[str]] = {}
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "new_params":
            cls = _name(node.args[0])
        elif isinstance(node.func, ast.Name | ast.Attribute) and _name(node.func).endswith(
            ("Params", "Ref")
        ):
            cls = _name(node.func)
        else:
            continue
        built.setdefault(cls, set()).update(k.arg for k in node.keywords if k.arg)
    return built


def _client_sources() -> list[str]:
    return [inspect.getsource(m) for m in CLIENT_MODULES]


def _spec_arg(node: ast.AST) -> ast.expr | None:
    """The spec a client function calls its method with: ``self.call(SPEC, ...)``, or
    ``rpc_stream(self, SPEC, ...)`` for a method that answers only as a stream (a watch)."""
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr == "call" and isinstance(f.value, ast.Name) \
            and f.value.id == "self":  # fmt: skip
        return node.args[0]
    if isinstance(f, ast.Name) and f.id == "rpc_stream" and isinstance(node.args[0], ast.Name) \
            and node.args[0].id == "self":  # fmt: skip
        return node.args[1]
    return None


def _client_calls() -> list[Call]:
    sources = _client_sources()
    calls = []
    for fn in (n for src in sources for n in ast.walk(ast.parse(src))):
        if not isinstance(fn, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            spec_arg = _spec_arg(node)
            if spec_arg is not None:
                name = _name(spec_arg)
                spec = next((getattr(m, name) for m in SPEC_MODULES if hasattr(m, name)), None)
                assert spec in GATEWAY_METHODS, f"{fn.name}: {name} is not a gateway method spec"
                calls.append(Call(fn.name, spec, _built(fn)))
    return calls


CALLS = _client_calls()


def test_every_gateway_method_has_a_client_method() -> None:
    called = {c.spec.name for c in CALLS}
    assert sorted(set(SPECS) - called) == [], "gateway methods the client cannot call"


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.spec.name)
def test_client_method_builds_the_contract_params(call: Call) -> None:
    params = call.spec.params
    assert params.__name__ in call.built, f"{call.function} does not build {params.__name__}"
    fields = {f.name for f in msgspec.structs.fields(params)}
    unknown = call.built[params.__name__] - fields
    assert not unknown, f"{call.function} sets {sorted(unknown)}, not fields of {params.__name__}"
    if params is not NoParams:
        required = {f.name for f in msgspec.structs.fields(params) if f.required}
        missing = required - call.built[params.__name__]
        assert not missing, f"{call.function} leaves out {sorted(missing)}"
    assert callable(getattr(client.FleetClient, call.function))


def test_client_module_spells_no_method_names() -> None:
    source = inspect.getsource(client) + "".join(_client_sources())
    for spec in GATEWAY_METHODS:
        assert f'"{spec.name}"' not in source, spec.name


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
