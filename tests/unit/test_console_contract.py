"""The console's contract module (services/gateway/static/contract.js): generated from
contracts/, committed up to date, and the only place the console's JavaScript gets method
names, error codes, id patterns and statuses from."""

from __future__ import annotations

import re

import pytest

from base.dotenv import merge_env
from codegen.generated import REGENERATE
from codegen.jsmodule import MODULE_PATH, constant_name, env_scopes_by_precedence, render
from contracts.errors import ERRORS
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.status import MachineStatus

STATIC = MODULE_PATH.parent


def test_committed_module_is_up_to_date() -> None:
    committed = MODULE_PATH.read_text() if MODULE_PATH.exists() else ""
    assert committed == render(), (
        f"{MODULE_PATH.name} differs from contracts/: regenerate it with `{REGENERATE}` "
        "and commit the result"
    )


@pytest.mark.parametrize(
    ("name", "constant"),
    [
        ("machines.exec", "MACHINES_EXEC"),
        ("machines.refreshEnv", "MACHINES_REFRESH_ENV"),
        ("machines.process.start", "MACHINES_PROCESS_START"),
        ("rpc.discover", "RPC_DISCOVER"),
        ("NotFound", "NOT_FOUND"),
        ("DaemonUnavailable", "DAEMON_UNAVAILABLE"),
        ("setting-up", "SETTING_UP"),
    ],
)
def test_constant_names_are_derived_mechanically(name: str, constant: str) -> None:
    assert constant_name(name) == constant


def test_every_method_error_and_status_is_exported() -> None:
    text = render()
    for spec in GATEWAY_METHODS:
        assert f'  {constant_name(spec.name)}: "{spec.name}",\n' in text
    for code, cls in ERRORS.items():
        assert f"  {constant_name(cls.__name__)}: {code},\n" in text
    for status in MachineStatus:
        assert f'  {status.name}: "{status.value}",\n' in text


def test_env_precedence_is_the_one_merge_env_applies() -> None:
    """The console shows which scope wins from ENV_SCOPES_BY_PRECEDENCE: merge_env, which
    writes the machines' .env, must let the last of them win."""
    scopes = env_scopes_by_precedence()
    assert sorted(scopes) == ["instance", "platform"], "merge_env takes exactly these scopes"
    merged = merge_env(**{scope: {"X": scope} for scope in scopes})
    assert merged["X"] == scopes[-1], (
        f"merge_env lets {merged['X']} win, contracts.models.EnvScope lists {scopes} "
        "(lowest precedence first): make them agree"
    )


def _console_sources() -> dict[str, str]:
    # The console's own code: not the third-party code vendored under static/vendor.
    vendor = STATIC / "vendor"
    files = sorted(p for p in STATIC.rglob("*.js")
                   if p != MODULE_PATH and vendor not in p.parents)  # fmt: skip
    assert files, f"no console JavaScript under {STATIC}"
    return {str(p.relative_to(STATIC)): p.read_text() for p in files}


def test_console_spells_no_method_name_error_code_or_id_pattern() -> None:
    """Everything the gateway defines reaches the console through contract.js only."""
    found: list[str] = []
    for name, text in _console_sources().items():
        for spec in GATEWAY_METHODS:
            if re.search(rf"[\"'`]{re.escape(spec.name)}[\"'`]", text):
                found.append(f"{name}: method name {spec.name!r}")
        for code in ERRORS:
            if code > 0 and re.search(rf"(?<![\w.]){code}(?![\w.])", text):
                found.append(f"{name}: error code {code}")
        if "[0-9a-f]{16}" in text:
            found.append(f"{name}: an id pattern")
    assert found == [], "use contract.js (METHODS, ERRORS, ID_PATTERNS) instead"
