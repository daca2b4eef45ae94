"""`fleet call METHOD [JSON | --param k=v ...]`: any gateway method, from its spec.

The params are checked against the method's params type here, in the words the gateway would
answer (contracts.rpc_params.invalid_params), before anything is sent; the result is printed as
the API's JSON. The hand-written commands stay where they add something (tables, streams,
files); this one follows the contracts, so every method has a command the day it is declared.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fleet.cli_common import EXIT_OK, SubAction, UsageError, command

if TYPE_CHECKING:
    from contracts.jsonrpc import AnySpec
    from fleet.client import FleetClient

# The specs (every contract) and msgspec are imported in the functions that use them: this
# module is imported to build the parser, for `fleet --help` too.


def specs() -> dict[str, AnySpec]:
    from contracts.gateway_rpc import GATEWAY_METHODS

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
    p.add_argument("params", nargs="?", metavar="JSON", help="its params, one JSON object")
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


def params_of(spec: AnySpec, text: str | None, pairs: Sequence[str]) -> Any:
    """The params Struct of ``spec`` from a JSON object and ``KEY=VALUE`` pairs (which win);
    UsageError naming what is wrong, as the gateway names it."""
    given: dict[str, Any] = {}
    if text is not None:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{spec.name}: the params are not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise UsageError(f"{spec.name}: the params must be a JSON object")
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE")
        given[key] = _value(pair, value)
    import msgspec

    from contracts.rpc_params import invalid_params

    try:
        # Not strict: a number or a boolean given as a word (-p timeoutS=30) is taken as one.
        return msgspec.convert(given, spec.params, strict=False)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{spec.name}: {invalid_params(exc).message}") from None


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
    import msgspec

    spec = spec_of(a.method)
    result = await c.call(spec, params_of(spec, a.params, a.param))
    print(msgspec.json.format(msgspec.json.encode(result), indent=2).decode())
    return EXIT_OK
