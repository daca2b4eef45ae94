"""`fleet call METHOD [JSON | --param k=v ...]`: any gateway method, from its spec.

The params are checked against the method's params type here, in the words the gateway would
answer (contracts.rpc.rpc_params.invalid_params), before anything is sent; the result is printed as
the API's JSON. The hand-written commands stay where they add something (tables, streams,
files); this one follows the contracts, so every method has a command the day it is declared.

A param its spec marks a credential (``contracts.credentials``: a secret's value) is never
taken from the command line, where other users of the host (``ps``) and the shell's history
see it: JSON given as ``-`` is read from stdin, and may hold it.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet.cli.common import EXIT_OK, SubAction, UsageError, command

if TYPE_CHECKING:
    from contracts.rpc.jsonrpc import AnySpec
    from fleet.client import FleetClient

# The specs (every contract) and msgspec are imported in the functions that use them: this
# module is imported to build the parser, for `fleet --help` too.


def specs() -> dict[str, AnySpec]:
    from contracts.gateway.rpc import GATEWAY_METHODS

    return {spec.name: spec for spec in GATEWAY_METHODS}


def method_groups(names: Sequence[str]) -> str:
    """Each group (the part before the last dot) and its methods' last parts, one line each."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        head, _, tail = name.rpartition(".")
        groups.setdefault(head, []).append(tail)
    return "\n".join(f"  {g}: {', '.join(ms)}" for g, ms in sorted(groups.items()))


def group_names() -> list[str]:
    """The methods' first parts (``machines``, ``instances``, ...), sorted."""
    return sorted({name.split(".", 1)[0] for name in specs()})


def register(sub: SubAction) -> None:
    p = command(sub, "call", _call, "call any API method by name (its params checked first)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter

    def methods_epilog() -> None:  # every contract: only for this help
        p.epilog = "methods (docs/api.md has each one's params):\n" + method_groups(list(specs()))

    p.on_help = methods_epilog
    p.add_argument("method", metavar="METHOD", help="a method's name, e.g. machines.get")
    p.add_argument("params", nargs="?", metavar="JSON",
                   help="its params, one JSON object; - reads it from stdin (a credential, such "
                   "as a secret's value, is taken only from there)")  # fmt: skip
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="one param (repeatable), after JSON's: a word "
                   "(-p machineId=m-0123456789abcdef -p timeoutS=30), or JSON for a list, "
                   "object or quoted string")  # fmt: skip


def spec_of(name: str) -> AnySpec:
    known = specs()
    if name in known:
        return known[name]
    near = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else "; `fleet call --help` lists them"
    raise UsageError(f"no method {name!r}{hint}")


def params_of(spec: AnySpec, text: str | None, pairs: Sequence[str], *,
              stdin: str | None = None) -> Any:  # fmt: skip
    """The params Struct of ``spec`` from a JSON object read from stdin, a JSON object given on
    the command line and ``KEY=VALUE`` pairs (each winning over the one before); UsageError
    naming what is wrong, as the gateway names it, or a credential given on the command line."""
    given = _object(spec, stdin) if stdin is not None else {}
    on_argv = _object(spec, text) if text is not None else {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        on_argv[key] = _value(pair, value)
    _no_credential(spec, on_argv)
    given.update(on_argv)
    import msgspec

    from contracts.rpc.rpc_params import invalid_params

    try:
        # Not strict: a number or a boolean given as a word (-p timeoutS=30) is taken as one.
        return msgspec.convert(given, spec.params, strict=False)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{spec.name}: {invalid_params(exc).message}") from None


def _object(spec: AnySpec, text: str) -> dict[str, Any]:
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{spec.name}: the params are not JSON: {exc}") from None
    if not isinstance(given, dict):
        raise UsageError(f"{spec.name}: the params must be a JSON object")
    return given


def _no_credential(spec: AnySpec, on_argv: dict[str, Any]) -> None:
    """UsageError when ``on_argv`` (params from the command line) holds a param ``spec``
    marks a credential, naming the ways to give it (the value never said back)."""
    from contracts.credentials import credential_paths

    for path in credential_paths(spec.params):
        if _holds(on_argv, path.split(".")):
            own = _own_command(spec.name)
            ways = f"`{own}` (it reads it from stdin or a file), or " if own else ""
            raise UsageError(
                f"{spec.name}: `{path}` is a credential, never taken from the command line, "
                "where other users of this host (ps) and your shell's history would see it: "
                f"use {ways}give the params as JSON on stdin: fleet call {spec.name} - "
                "< params.json (-p may add the others)"
            )


def _holds(given: Any, path: list[str]) -> bool:
    """Whether JSON ``given`` has a value at ``path`` (field names; ``name[]``: in each item of
    a list)."""
    if not path:
        return given is not None
    if not isinstance(given, dict):
        return False
    head, many = path[0].removesuffix("[]"), path[0].endswith("[]")
    if head not in given:
        return False
    inner = given[head]
    if many:
        return isinstance(inner, list) and any(_holds(i, path[1:]) for i in inner)
    return _holds(inner, path[1:])


def _own_command(method: str) -> str | None:
    """The CLI's own command for ``method`` (``secrets.set``: ``fleet secrets set``), if it
    has one."""
    import importlib

    from fleet.cli.common import Parser
    from fleet.cli.defaults import COMMANDS

    group, _, verb = method.rpartition(".")
    if group not in COMMANDS:
        return None
    scratch = Parser(add_help=False).add_subparsers()
    importlib.import_module(f"fleet.cli.{COMMANDS[group][0]}").register(scratch)
    actions = scratch.choices[group]._actions  # argparse lists its subcommands there only
    verbs = {name for action in actions if isinstance(action, argparse._SubParsersAction)
             for name in action.choices}  # fmt: skip
    return f"fleet {group} {verb}" if verb in verbs else None


def _value(pair: str, value: str) -> Any:
    """A JSON object, list or quoted string as JSON; anything else as the word it is (the
    params type then reads a number or a boolean from it)."""
    if not value.startswith(("{", "[", '"')):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--param {pair!r}: not JSON: {exc}") from None


async def _call(c: FleetClient, a: argparse.Namespace) -> int:
    import sys

    import msgspec

    spec = spec_of(a.method)
    if a.params == "-":
        params = params_of(spec, None, a.param, stdin=sys.stdin.read())
    else:
        params = params_of(spec, a.params, a.param)
    result = await c.call(spec, params)
    print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
    return EXIT_OK
