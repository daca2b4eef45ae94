"""`fleet call`'s rules: a method found by name (a typo gets the nearest names), params from a
JSON object and KEY=VALUE pairs (which win), checked against the spec in the gateway's words."""

from __future__ import annotations

import json

import pytest

from contracts.credentials import credential_paths
from contracts.gateway.rpc import GATEWAY_METHODS
from fleet.cli.call import method_groups, params_of, spec_of
from fleet.cli.common import UsageError
from fleet.cli.entry import parse

MID = "m-0123456789abcdef"


def test_every_gateway_method_is_callable_by_name() -> None:
    for spec in GATEWAY_METHODS:
        assert spec_of(spec.name) is spec


def test_a_typo_names_the_nearest_methods() -> None:
    with pytest.raises(UsageError, match=r"no method 'machines\.gte'; did you mean machines\.get"):
        spec_of("machines.gte")
    with pytest.raises(UsageError, match="fleet call --help"):
        spec_of("zzz")


def test_params_from_json_and_pairs_the_pairs_winning() -> None:
    exec_ = spec_of("machines.exec")
    got = params_of(exec_, '{"machineId": "m-ffffffffffffffff", "timeoutS": 5}',
                    [f"machineId={MID}", 'command=["echo", "a b"]', "timeoutS=30"])  # fmt: skip
    assert (got.machine_id, got.command, got.timeout_s) == (MID, ["echo", "a b"], 30)


def test_bad_params_are_named_as_the_gateway_names_them() -> None:
    get = spec_of("machines.get")
    with pytest.raises(UsageError, match=r"machines.get: invalid params: .*machineId"):
        params_of(get, None, [])
    with pytest.raises(UsageError, match="they look like m-0123456789abcdef"):
        params_of(get, None, ["machineId=m-nope"])
    with pytest.raises(UsageError, match="not JSON"):
        params_of(get, "{nope", [])
    with pytest.raises(UsageError, match="must be a JSON object"):
        params_of(get, "[1]", [])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        params_of(get, None, ["machineId"])
    with pytest.raises(UsageError, match="not JSON"):
        params_of(get, None, ['machineId=["x"'])


def test_the_help_lists_every_method_group() -> None:
    groups = method_groups([s.name for s in GATEWAY_METHODS])
    for spec in GATEWAY_METHODS:
        head, _, tail = spec.name.rpartition(".")
        assert any(line.startswith(f"  {head}: ") and tail in line for line in groups.splitlines())
    assert parse(["call", "machines.get", "-p", f"machineId={MID}"]).param == [f"machineId={MID}"]


def test_fleet_help_names_every_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for spec in GATEWAY_METHODS:
        assert spec.name.split(".", 1)[0] in out
    assert "fleet call METHOD" in out


def test_no_param_a_spec_marks_a_credential_is_taken_from_the_command_line() -> None:
    """Read from each spec's params type (``contracts.credentials``), for every method: set by
    ``-p`` or in the JSON argument, it is refused; from stdin's JSON, taken."""
    marked = {s.name: credential_paths(s.params) for s in GATEWAY_METHODS}
    marked = {name: paths for name, paths in marked.items() if paths}
    assert marked["secrets.set"] == ["value"]  # the walk finds what it is about
    for name, paths in marked.items():
        spec = spec_of(name)
        for path in paths:
            with pytest.raises(UsageError, match=f"`{path}` is a credential"):
                params_of(spec, None, [f"{path}=s3cret"])
            with pytest.raises(UsageError, match=f"fleet call {name} -"):
                params_of(spec, json.dumps({path: "s3cret"}), [])
    got = params_of(spec_of("secrets.set"), None,
                    ["instanceId=i-0123456789abcdef", "name=K", 'hosts=["a.example"]'],
                    stdin='{"value": "s3cret"}')  # fmt: skip
    assert got.value == "s3cret"
