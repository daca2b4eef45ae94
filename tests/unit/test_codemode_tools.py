"""What codemode offers code is read off the gateway's specs: ``fleet.<method>`` for each spec
that says ``in_code``, ``machine.<tool>`` for each that names a ``tool``."""

from __future__ import annotations

import pytest

from contracts.gateway.codemode import CODEMODE_METHODS
from contracts.gateway.files import MACHINES_WATCH
from contracts.gateway.rpc import GATEWAY_METHODS, MACHINES_EXEC, RPC_DISCOVER, MachineRef
from contracts.rpc.jsonrpc import MethodSpec, NoParams
from services.codemode.providers import FLEET_METHODS, MACHINE_TOOLS, machine_tools


def test_code_may_call_every_gateway_method_but_codemode_s_and_discovery() -> None:
    # A watch answers only as a stream (POST /rpc/stream), which a tool call is not.
    hidden = {s.name for s in (*CODEMODE_METHODS, RPC_DISCOVER, MACHINES_WATCH)}
    assert set(FLEET_METHODS) == {s.name for s in GATEWAY_METHODS} - hidden
    assert {s.name for s in GATEWAY_METHODS if not s.in_code} == hidden


def test_each_machine_tool_is_the_spec_naming_it_and_takes_the_machine() -> None:
    assert {s.tool: s for s in GATEWAY_METHODS if s.tool is not None} == MACHINE_TOOLS
    assert set(MACHINE_TOOLS) == {
        "exec", "write_file", "list_dir", "stat", "remove_file", "make_dir", "move",
        "process_start",
        "process_list", "process_kill", "process_logs", "fork", "code_run", "desktop_start",
        "desktop_stop", "desktop_get", "desktop_screenshot", "desktop_act", "desktop_open",
        "metrics",
    }  # fmt: skip
    assert all("machine_id" in s.params.__struct_fields__ for s in MACHINE_TOOLS.values())


def test_two_specs_naming_one_tool_are_refused_by_name() -> None:
    """A view built by a dict would let the later spec silently hide the earlier one."""
    other = MethodSpec("machines.echo", MachineRef, NoParams, "Echo.", scope="machines:exec",
                       tool="exec")  # fmt: skip
    with pytest.raises(ValueError, match=r"machine\.exec is declared twice \(by machines\.echo\)"):
        machine_tools((MACHINES_EXEC, other))
    shadow = MethodSpec("machines.echo", MachineRef, NoParams, "Echo.", tool="read_file")
    with pytest.raises(ValueError, match="read_file"):
        machine_tools((shadow,))


def test_a_tool_whose_method_names_no_machine_is_refused() -> None:
    unbound = MethodSpec("instances.echo", NoParams, NoParams, "Echo.", tool="echo")
    with pytest.raises(ValueError, match="takes no machineId"):
        machine_tools((unbound,))
