"""The Python client's generated methods (``fleet/client/generated.py``) follow the method table:
the committed file is current, a new method needs no entry of its own, and FleetClient is the
generated class and its conveniences, no tower of mixins."""

from __future__ import annotations

import inspect

import pytest

from codegen import pyclient
from codegen.generated import REGENERATE
from codegen.pyclient import HAND_WRITTEN, MODULE_PATH, NAMES, client_method
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import ClientMethod, MethodSpec, Params, Result
from fleet.client import FleetClient
from fleet.client.core import ClientCore
from fleet.client.generated import GatewayMethods

SPECS = {spec.name: spec for spec in GATEWAY_METHODS}


def test_committed_module_is_up_to_date() -> None:
    committed = MODULE_PATH.read_text() if MODULE_PATH.exists() else ""
    assert committed == pyclient.render(), (
        f"{MODULE_PATH.name} differs from contracts/: regenerate it with `{REGENERATE}` "
        "and commit the result"
    )


def test_the_table_names_only_gateway_methods() -> None:
    assert sorted((set(NAMES) | HAND_WRITTEN) - set(SPECS)) == []
    assert sorted(set(NAMES) & HAND_WRITTEN) == []


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("machines.refreshCode", "machines_refresh_code"),
        ("codemode.bridges.list", "codemode_bridges_list"),
        ("instances.setAutoStop", "instances_set_auto_stop"),
    ],
)
def test_python_names_are_derived_mechanically(method: str, name: str) -> None:
    assert pyclient.python_name(method) == name


class _NewParams(Params, kw_only=True):
    machine_id: str
    depth: int = 1
    label: str


class _NewResult(Result, kw_only=True):
    done: bool


def test_the_client_names_and_hand_written_methods_are_the_specs() -> None:
    """``NAMES`` and ``HAND_WRITTEN`` are views of the specs' ``client`` and ``hand_written``."""
    declared = {s.name: s.client for s in GATEWAY_METHODS if s.client is not None}
    assert declared == NAMES
    assert NAMES["audit.list"] == ClientMethod("audit", unwrap="entries")
    assert {s.name for s in GATEWAY_METHODS if s.hand_written} == HAND_WRITTEN
    assert all(client_method(SPECS[name]) == py for name, py in NAMES.items())


def test_a_spec_s_client_names_its_client_method() -> None:
    named = MethodSpec("machines.doThing", _NewParams, _NewResult, "Do a thing.",
                       client=ClientMethod("do_it", "label", unwrap="done"))  # fmt: skip
    assert client_method(named) == ClientMethod("do_it", "label", unwrap="done")


def test_a_new_method_needs_no_entry() -> None:
    """Its name by the rule, its required fields positional, the rest keyword-only."""
    spec = MethodSpec("machines.doThing", _NewParams, _NewResult, "Do a thing.")
    py = client_method(spec)
    assert (py.name, py.args, py.unwrap) == ("machines_do_thing", "machine_id label", None)


def test_every_generated_method_is_the_client_s_with_its_summary() -> None:
    for spec in GATEWAY_METHODS:
        if spec.name in HAND_WRITTEN:
            continue
        name = client_method(spec).name
        method = getattr(FleetClient, name)
        assert method is getattr(GatewayMethods, name), f"{name} is overridden by hand"
        assert inspect.iscoroutinefunction(method)
        assert spec.summary.split()[0] in (method.__doc__ or ""), name


def test_fleet_client_is_the_generated_methods_its_plumbing_and_its_own() -> None:
    assert FleetClient.__mro__ == (FleetClient, ClientCore, GatewayMethods, object)
