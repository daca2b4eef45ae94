"""A gateway spec that passes through to a daemon method (``MethodSpec.passes``): checked
against the daemon method's params and result at import, its params mapped by name."""

from __future__ import annotations

import pytest

from contracts.rpc.jsonrpc import MethodSpec, Params, Result
from contracts.rpc.pass_through import PassThrough


class KillParams(Params, kw_only=True):
    pid: int | None = None
    tag: str | None = None


class Killed(Result, kw_only=True):
    pid: int


KILL = MethodSpec("process.kill", KillParams, Killed, "Kill it.")


class MachineKill(Params, kw_only=True):
    machine_id: str
    pid: int | None = None
    tag: str | None = None


class MachineKillByName(Params, kw_only=True):
    machine_id: str
    name: str


def test_the_daemons_params_are_the_gateways_but_the_machine() -> None:
    spec = MethodSpec("m.kill", MachineKill, Killed, "Kill it.", passes=PassThrough(KILL))
    assert spec.passes is not None
    passed = spec.passes.params_of(MachineKill(machine_id="m-1", pid=7))
    assert passed == KillParams(pid=7)


def test_a_renamed_field_goes_by_the_daemons_name() -> None:
    spec = MethodSpec("m.kill", MachineKillByName, Killed, "Kill it.",
                      passes=PassThrough(KILL, rename=(("name", "tag"),)))  # fmt: skip
    assert spec.passes is not None
    assert spec.passes.params_of(MachineKillByName(machine_id="m", name="web")) == KillParams(
        tag="web"
    )


@pytest.mark.parametrize(
    ("params", "result", "says"),
    [
        (KillParams, Killed, "no machine_id"),
        (MachineKillByName, Killed, r"name is not a field of process\.kill.s params"),
        (MachineKill, KillParams, r"its result is not process\.kill.s"),
    ],
)
def test_a_spec_that_does_not_match_its_daemon_method_is_refused_at_import(
    params: type[Params], result: type, says: str
) -> None:
    with pytest.raises(TypeError, match=says):
        MethodSpec("m.kill", params, result, "Kill it.", passes=PassThrough(KILL))


class NeedsPid(Params, kw_only=True):
    pid: int


def test_a_field_the_daemon_needs_must_be_given() -> None:
    needs = MethodSpec("process.wait", NeedsPid, Killed, "Wait for it.")
    with pytest.raises(TypeError, match=r"process\.wait needs pid"):
        MethodSpec("m.wait", MachineKillByName, Killed, "Wait.",
                   passes=PassThrough(needs, rename=(("name", "tag"),)))  # fmt: skip


HOST_KILL = MethodSpec("host.kill", MachineKill, Killed, "Kill it on its host.")


def test_a_host_method_gets_the_machine_too() -> None:
    spec = MethodSpec("m.hostKill", MachineKill, Killed, "Kill it.",
                      passes=PassThrough(HOST_KILL, host=True))  # fmt: skip
    assert spec.passes is not None
    said = MachineKill(machine_id="m-1", pid=7)
    assert spec.passes.params_of(said) == said
    with pytest.raises(TypeError, match=r"host\.kill needs machine_id"):
        MethodSpec(
            "m.bad", KillParams, Killed, "Kill it.", passes=PassThrough(HOST_KILL, host=True)
        )
