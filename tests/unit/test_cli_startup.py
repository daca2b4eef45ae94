"""What `fleet` loads before it runs a command: building its parser (`fleet --help`, a usage
error) imports neither the client (aiohttp), nor asyncio, nor the method specs, in a fresh
interpreter; `fleet --help` builds only the top-level parser (no command's module, no msgspec)
and a command only its own module's parsers, with the same help texts as the whole parser;
`fleet --help` still names every method group, from a list a test keeps equal to the specs;
`fleet --version` prints the package version and git SHA (bench 30 times both)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from base.version import git_sha, package_version
from fleet.cli.call import group_names, method_groups, specs
from fleet.cli.common import LazyCommands, Parser
from fleet.cli.defaults import COMMANDS, METHOD_GROUPS
from fleet.cli.entry import main, parse

PROBE = """
import json, sys
import fleet.cli.entry
fleet.cli.entry._parser()
heavy = ["aiohttp", "asyncio", "structlog", "contracts.rpc.jsonrpc", "contracts.gateway.rpc"]
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
    from contracts.gateway.audit import MAX_LIST

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert f"at most this many (<= {MAX_LIST})" in " ".join(capsys.readouterr().out.split())


class _Recorder:
    """What a command asked the client for: the timeout each run was given."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    async def code_stream(self, code: str, **kw: Any) -> AsyncIterator[object]:
        from contracts.gateway.codemode import RunResult

        self.timeouts.append(kw["timeout_s"])
        yield RunResult(run_id="r-1", status="ok", result=1)

    async def machines_code_run(self, machine_id: str, code: str, **kw: Any) -> object:
        from contracts.daemon.code import CodeRunResult

        self.timeouts.append(kw["timeout_s"])
        return CodeRunResult(execution_count=1, results=[], stdout=[], stderr=[], error=None,
                             context_id="default")  # fmt: skip


CODE_RUN = ["--json", "code", "run", "-"]
KERNEL_RUN = ["--json", "machines", "code", "run", "m-0123456789abcdef"]


async def test_a_run_without_timeout_gets_the_contracts_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The defaults are read when a run starts, not when the parser is built (which would load
    the method specs): the same values as before, given or not."""
    from contracts.daemon.code import DEFAULT_CODE_TIMEOUT_S
    from contracts.gateway.codemode import DEFAULT_TIMEOUT_S

    cases = [
        (CODE_RUN, DEFAULT_TIMEOUT_S),
        ([*CODE_RUN, "--timeout", "7"], 7.0),
        ([*KERNEL_RUN, "--", "1"], DEFAULT_CODE_TIMEOUT_S),
        ([*KERNEL_RUN, "--timeout", "7", "--", "1"], 7.0),
    ]
    for argv, want in cases:
        monkeypatch.setattr("sys.stdin", io.StringIO("1"))
        client, args = _Recorder(), parse(argv)
        assert await args.func(client, args) == 0
        assert client.timeouts == [want], argv


LOOKUPS = """
import gettext, json
import fleet.cli.entry
searches = []
real_find = gettext.find
gettext.find = lambda *a, **kw: searches.append(a[0]) or real_find(*a, **kw)
fleet.cli.entry._parser()
print(json.dumps(len(searches)))
"""


def test_building_the_parser_looks_each_argparse_string_up_once() -> None:
    """gettext searches the locale directories on each call for a domain it has no catalogue
    for (argparse's): once per distinct string, not once per argument (hundreds)."""
    out = subprocess.run([sys.executable, "-c", LOOKUPS], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out) <= 10


VERSION_PROBE = """
import contextlib, io, json, sys
import fleet.cli.entry
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    fleet.cli.entry.main(["--version"])
heavy = ["contracts.errors", "contracts.bus.events", "fleet.cli.machines", "fleet.cli.render",
         "msgspec", "argparse", "fleet.cli.common"]
print(json.dumps([m for m in heavy if m in sys.modules]))
"""


def test_fleet_version_builds_no_parser_and_loads_no_method_records() -> None:
    """Nor msgspec (the code directory's marker it looks for is in contracts.daemon.code_files), nor
    argparse: fleet.cli.entry imports the parser's module where it builds the parser."""
    out = subprocess.run([sys.executable, "-c", VERSION_PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out) == []


def _commands(parser: argparse.ArgumentParser) -> LazyCommands:
    return next(a for a in parser._actions if isinstance(a, LazyCommands))


def test_the_lazy_commands_table_is_what_their_modules_register() -> None:
    """cli_defaults.COMMANDS (what `fleet --help` lists without importing the commands'
    modules) names every command the modules register, in the same order, with the same help
    and the module that registers it."""
    from fleet.cli import entry as cli

    registered = []
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        scratch = Parser().add_subparsers()
        __import__(f"fleet.cli.{module}", fromlist=["register"]).register(scratch)
        registered += [(c.dest, (module, c.help)) for c in scratch._choices_actions]
    order = {name: i for i, name in enumerate(COMMANDS)}
    assert sorted(registered, key=lambda r: order.get(r[0], -1)) == list(COMMANDS.items())
    whole = _commands(cli._parser())
    assert [c.dest for c in whole._choices_actions] == ["up", "image", "gc", *COMMANDS]


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse(argv)
    return out.getvalue()


def test_a_lazily_built_command_has_the_whole_parsers_help(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`fleet --help` and each command's `--help`, from the parser a command runs with (each
    command built when it is given), are those of the parser built whole (the docs' pages)."""
    from fleet.cli import entry as cli

    monkeypatch.setenv("COLUMNS", "100")
    whole = cli._parser()
    assert _help(["--help"]) == whole.format_help()
    for name, built in _commands(whole).choices.items():
        assert _help([name, "--help"]) == built.format_help(), name


HELP_PROBE = """
import contextlib, io, json, sys
import fleet.cli.entry
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    fleet.cli.entry.main(sys.argv[1:])
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("fleet.", "msgspec")))))
"""


def _imported(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", HELP_PROBE, *argv], capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    return set(json.loads(out.splitlines()[-1]))


def test_fleet_help_imports_no_commands_module_nor_msgspec() -> None:
    assert _imported("--help") == {"fleet.cli", "fleet.cli.entry", "fleet.cli.common",
                                   "fleet.cli.defaults"}  # fmt: skip


def test_a_command_imports_its_own_module_only() -> None:
    """(`fleet machines list --help`: the parse stops at the help, before the client.)"""
    modules = {m for m in _imported("machines", "list", "--help") if m.startswith("fleet.")}
    assert "fleet.cli.machines" in modules
    others = {f"fleet.cli.{m}" for m, _ in COMMANDS.values()} - {"fleet.cli.machines"}
    assert not modules & others


CLIENT_PROBE = """
import json, sys
import fleet.cli.machines, fleet.client.client
print(json.dumps([m for m in ("structlog", "aiohttp") if m in sys.modules]))
"""


def test_a_commands_client_imports_no_structlog_until_it_logs() -> None:
    """A command's module and the client (aiohttp comes when the first request is sent) load
    structlog only when a line is logged (contracts.rpc.jsonrpc.LazyLogger)."""
    out = subprocess.run([sys.executable, "-c", CLIENT_PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out) == []


def test_the_lazy_logger_logs_through_structlog() -> None:
    from structlog.testing import capture_logs

    from contracts.rpc.jsonrpc import LazyLogger

    with capture_logs() as logs:
        LazyLogger("fleet.client.core").info("client.retry_cut", attempt=2)
    assert logs == [{"event": "client.retry_cut", "attempt": 2, "log_level": "info"}]


def test_python_m_fleet_runs_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "fleet", "--version"], capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    assert out == f"fleet {package_version()} ({git_sha()})\n"
