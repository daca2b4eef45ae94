"""What `fleet` loads before it runs a command: building its parser (`fleet --help`, a usage
error) imports neither the client (aiohttp), nor asyncio, nor the method specs, in a fresh
interpreter; `fleet --help` still names every method group, from a list a test keeps equal to
the specs; `fleet --version` prints the package version and git SHA (bench 30 times both)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from base.version import git_sha, package_version
from fleet.cli import main
from fleet.cli_call import group_names, method_groups, specs
from fleet.cli_defaults import METHOD_GROUPS

PROBE = """
import json, sys
import fleet.cli
fleet.cli._parser()
heavy = ["aiohttp", "asyncio", "structlog", "contracts.jsonrpc", "contracts.gateway_rpc"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""


def test_building_the_parser_imports_no_client_nor_method_specs() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out) == []


def test_the_written_out_method_groups_are_the_specs_groups() -> None:
    assert list(METHOD_GROUPS) == group_names()


def test_fleet_help_lists_every_method_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "its groups: " + ", ".join(group_names()) + "." in out


def test_fleet_version_prints_the_package_version_and_git_sha(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"fleet {package_version()} ({git_sha()})\n"


def test_fleet_call_help_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["call", "--help"])
    assert method_groups(list(specs())) in capsys.readouterr().out


def test_fleet_audit_help_says_the_contracts_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from contracts.audit import MAX_LIST

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert f"at most this many (<= {MAX_LIST})" in " ".join(capsys.readouterr().out.split())
