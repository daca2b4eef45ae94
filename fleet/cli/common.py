"""What every `fleet` command shares: exit codes, output, and how a command is declared."""

from __future__ import annotations

import argparse
import functools
import gettext
import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

# The exit codes live in cli_defaults, which `fleet --version` imports alone: re-exported.
from fleet.cli.defaults import (
    EXIT_API as EXIT_API,
    EXIT_BROKEN_PIPE as EXIT_BROKEN_PIPE,
    EXIT_FAILED as EXIT_FAILED,
    EXIT_INTERRUPTED as EXIT_INTERRUPTED,
    EXIT_OK as EXIT_OK,
    EXIT_TIMEOUT as EXIT_TIMEOUT,
    EXIT_UNREACHABLE as EXIT_UNREACHABLE,
    EXIT_USAGE as EXIT_USAGE,
    add_common_flags,
    error_text,
    version_line,
)

if TYPE_CHECKING:
    from contracts.errors import FleetError
    from fleet.client import FleetClient


# argparse passes each of its own strings ("options", "show this help message and exit", ...)
# through gettext, which, with no catalogue for argparse installed, searches the locale
# directories again on every call: some 300 searches, most of the time `fleet --help` spent
# building its parser. A string's translation does not change within a process, so each is
# looked up once.
if getattr(argparse, "_", None) is gettext.gettext:
    setattr(argparse, "_", functools.cache(gettext.gettext))  # noqa: B010

SubAction: TypeAlias = "argparse._SubParsersAction[Parser]"
#: A string: the client is imported only once a command runs (`fleet --help` never needs it).
Cmd: TypeAlias = "Callable[[FleetClient, argparse.Namespace], Awaitable[int]]"


class Parser(argparse.ArgumentParser):
    """`fleet`'s parsers. What a help text needs from the contracts (`fleet call`'s list of
    methods, a limit) is filled in by ``on_help`` when that help is printed: importing the
    method specs to build the parser would cost every command, `fleet --help` too."""

    on_help: Callable[[], None] | None = None

    def format_help(self) -> str:
        if self.on_help is not None:
            self.on_help()
        return super().format_help()


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[Parser]
else:
    _SubParsers = argparse._SubParsersAction


class LazyCommands(_SubParsers):
    """Subcommands whose parsers are built when one of them is given: ``fleet --help`` lists
    them from their names and help alone, and ``fleet machines list`` imports and builds only
    the module that registers ``machines``, not every command's (their modules load the API's
    records). Until then each is an empty parser that only names the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The commands not built yet: their modules in ``fleet``.
        self.unbuilt: dict[str, str] = {}

    def add_later(self, name: str, help: str, module: str) -> None:
        """``name`` is registered by ``fleet.<module>``'s ``register(sub)`` when needed."""
        self.add_parser(name, help=help)
        self.unbuilt[name] = module

    def build(self, name: str) -> None:
        """Runs the register of ``name``'s module, and keeps the parsers it made for the
        commands still unbuilt (a module registers several: all of them are built now)."""
        if (module := self.unbuilt.get(name)) is None:
            return
        scratch: SubAction = Parser(add_help=False).add_subparsers()
        scratch._prog_prefix = self._prog_prefix  # the progs the real parent would give them
        importlib.import_module(f"fleet.cli.{module}").register(scratch)
        for built, parser in scratch.choices.items():
            if self.unbuilt.pop(built, None) is not None:
                self._name_parser_map[built] = parser

    def build_all(self) -> None:
        for name in list(self.unbuilt):
            self.build(name)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        self.build(values[0])
        super().__call__(parser, namespace, values, option_string)


class VersionAction(argparse.Action):
    """argparse's own version action takes its text when the parser is built: this one asks
    git only when ``--version`` is given."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_line())
        parser.exit()


class UsageError(Exception):
    """Arguments argparse accepted but the command cannot use; exit code 2."""


def error_line(exc: FleetError) -> str:
    """How every command prints an error the gateway answered, whichever route it came by."""
    return error_text(exc.code, exc.message)


def common_flags(*, url: bool = True) -> Parser:
    """The global flags, accepted after the command too (`fleet machines list --json`). Their
    defaults are set once, on the top-level parser."""
    p = Parser(add_help=False)
    add_common_flags(p, url=url)
    return p


COMMON = common_flags()
#: For a command with its own --url (`repos add`): the gateway's goes before the command.
COMMON_NO_URL = common_flags(url=False)


def command(
    group: SubAction,
    name: str,
    func: Cmd,
    help: str | None = None,
    *,
    flags: Parser = COMMON,
) -> Parser:
    """A leaf command: its parser, with the common flags, dispatching to ``func``."""
    p = group.add_parser(name, help=help, description=help, parents=[flags])
    p.set_defaults(func=func)
    return p


def group(
    sub: SubAction,
    name: str,
    help: str,
) -> SubAction:
    p = sub.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest="sub", required=True, metavar="COMMAND")


def emit(args: argparse.Namespace, obj: Any, human: Callable[[], str]) -> int:
    """``--json``: the raw result; else the text for people. Exit code 0."""
    print(to_json(obj) if args.json else human())
    return EXIT_OK


def to_json(obj: Any) -> str:
    import msgspec  # here: building the parser (`fleet --help`) does without it

    return msgspec.json.encode(obj).decode()
