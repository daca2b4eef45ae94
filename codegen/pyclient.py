"""The Python client's methods, ``fleet/client/generated.py``, from the gateway's method table.

One typed ``async`` method per ``MethodSpec`` of ``GATEWAY_METHODS``: its parameters are the
fields of the spec's params Struct (their types and defaults), its answer the spec's result (or
one field of it), its docstring the spec's summary. ``FleetClient`` inherits them; what is not a
one-to-one wrapper (waiting, streams, retries, transfers, the methods in ``HAND_WRITTEN``) is
written by hand in ``fleet/client/`` (``calls.py``, ``streams.py``, ``transfer.py``, ``core.py``;
``hand_written`` on their specs).

A method's Python name and positional parameters follow one rule: ``machines.doThing`` is
``machines_do_thing(...)`` with the params' required fields positional (in field order) and
the others keyword-only. A spec's ``client`` names a method that reads otherwise
(``create_instance(name)``, ``list_machines(instance_id)``); a new method needs neither.

``python -m codegen`` writes the file with the other generated ones (``codegen.generated``);
``tests/unit/test_codegen.py`` fails when the committed file is stale.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
import textwrap
import types
import typing
from collections.abc import Iterator, Sequence

import msgspec

import contracts
from codegen.generated import REPO
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, NoParams

MODULE_PATH = REPO / "fleet" / "client" / "generated.py"
LINE_WIDTH = 100
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


#: A method's Python name, positional parameters, unwrapped field and added words.
Py = ClientMethod

#: Methods whose client method is hand-written (a convenience: a default made on the client,
#: a longer wait, a resend, a stream), in ``fleet/client/``: a view of the specs'
#: ``hand_written``; none is generated for them.
HAND_WRITTEN = frozenset(s.name for s in GATEWAY_METHODS if s.hand_written)

#: The client's public names that do not follow the rule (``python_name``), kept as they are:
#: a view of the specs' ``client``.
NAMES: dict[str, Py] = {s.name: s.client for s in GATEWAY_METHODS if s.client is not None}


def python_name(method: str) -> str:
    """The rule: ``machines.refreshCode`` is ``machines_refresh_code``."""
    parts = re.split(r"[.\-]", method)
    return "_".join(_CAMEL_BOUNDARY.sub("_", part).lower() for part in parts)


def client_method(spec: AnySpec) -> Py:
    """The spec's ``client`` (or its entry in ``NAMES``), else the rule's: required fields
    positional."""
    if spec.client is not None:
        return spec.client
    if spec.name in NAMES:
        return NAMES[spec.name]
    required = [f.name for f in msgspec.structs.fields(spec.params) if f.required]
    return Py(python_name(spec.name), " ".join(required))


class _Imports:
    """Type expressions of runtime types, and the imports they need (type aliases by the
    name they have in contracts/, so ``ProviderName`` stays ``ProviderName``)."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self.aliases = _aliases()

    def need(self, module: str, name: str) -> str:
        self.names.setdefault(module, set()).add(name)
        return name

    def render(self, t: object) -> str:
        if t is None or t is type(None):
            return "None"
        alias = self.aliases.get(_key(t))
        if alias is not None:
            return self.need(*alias)
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin is typing.Union or origin is types.UnionType:
            return " | ".join(self.render(a) for a in args)
        if origin is typing.Literal:
            self.need("typing", "Literal")
            return f"Literal[{', '.join(_repr(a) for a in args)}]"
        if origin is not None:
            inner = ", ".join("Any" if a is typing.Any else self.render(a) for a in args)
            if typing.Any in args:
                self.need("typing", "Any")
            return f"{self.render(origin)}[{inner}]"
        if isinstance(t, type):
            if t.__module__ == "builtins":
                return t.__name__
            return self.need(t.__module__, t.__qualname__)
        raise TypeError(f"cannot spell the type {t!r}")

    def lines(self) -> list[str]:
        """The imports as ruff's isort orders them: the standard library's, then ours."""
        out: list[str] = []
        for stdlib in (True, False):
            if out:
                out.append("")
            for module in sorted(m for m in self.names if _stdlib(m) is stdlib):
                names = sorted(self.names[module], key=_isort_key)
                line = f"from {module} import {', '.join(names)}"
                if len(line) <= LINE_WIDTH:
                    out.append(line)
                else:
                    out += _call(f"from {module} import (", names, ")", "", hug=False)
        return out


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest, each case-insensitively (isort's
    ``order-by-type``)."""
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[0].isupper() else 2
    return kind, name.lower()


def _stdlib(module: str) -> bool:
    return module.split(".")[0] in {"typing", "collections", "datetime"}


def _key(t: object) -> object:
    try:
        hash(t)
    except TypeError:
        return None
    return t


def _definitions() -> Iterator[tuple[str, str, object]]:
    """(module, name, value) of each public name assigned at the top level of a contracts
    module: where it is defined, not where it is imported (mypy wants an import from there)."""
    found = pkgutil.walk_packages(contracts.__path__, "contracts.")
    for info in sorted(found, key=lambda i: i.name):
        module = importlib.import_module(info.name)
        for node in ast.parse(inspect.getsource(module)).body:
            target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if isinstance(target, ast.Name) and not target.id.startswith("_"):
                yield module.__name__, target.id, getattr(module, target.id, None)


def _aliases() -> dict[object, tuple[str, str]]:
    """Type aliases of contracts/ (not Annotated ones: those say a constraint, and the client
    sends the plain type), by value."""
    found: dict[object, tuple[str, str]] = {}
    seen: set[object] = set()
    for module, name, value in _definitions():
        if typing.get_origin(value) in (None, typing.Annotated) or _key(value) is None:
            continue
        if value in seen:  # two names of one type: neither is the one
            found.pop(value, None)
            continue
        seen.add(value)
        found[value] = (module, name)
    return found


def _repr(value: object) -> str:
    """A literal as ruff formats it (strings in double quotes)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _default(value: object) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return _repr(value)
    raise TypeError(f"cannot spell the default {value!r}")


def _call(head: str, items: Sequence[str], tail: str, indent: str, hug: bool = True) -> list[str]:
    """``head(items)tail`` as ruff formats it: on one line if it fits, else the items on one
    line of their own (``hug``), else one item a line with a trailing comma."""
    line = f"{indent}{head}{', '.join(items)}{tail}"
    if len(line) <= LINE_WIDTH:
        return [line]
    inner = f"{indent}    {', '.join(items)}"
    if hug and len(inner) <= LINE_WIDTH:
        return [f"{indent}{head}", inner, f"{indent}{tail}"]
    return [f"{indent}{head}", *(f"{indent}    {item}," for item in items), f"{indent}{tail}"]


def _docstring(text: str, indent: str) -> list[str]:
    text = " ".join(text.split()).replace("\\", "\\\\").replace('"""', "'''")
    wrapped = textwrap.wrap(text, LINE_WIDTH - len(indent) - 6)
    if len(wrapped) == 1:
        return [f'{indent}"""{wrapped[0]}"""']
    return [f'{indent}"""{wrapped[0]}', *(indent + w for w in wrapped[1:]), f'{indent}"""']


def _method(spec: AnySpec, py: Py, imports: _Imports, constant: str) -> list[str]:
    hints = typing.get_type_hints(spec.params)
    fields = {f.name: f for f in msgspec.structs.fields(spec.params)}
    renames = dict(a.partition("=")[::2] if "=" in a else (a, a) for a in py.args.split())
    by_field = {field: name for name, field in renames.items()}
    unknown = set(by_field) - set(fields)
    if unknown:
        raise ValueError(f"{spec.name}: {sorted(unknown)} are not fields of {spec.params}")

    def param(field: str) -> str:
        f, name = fields[field], by_field.get(field, field)
        typed = f"{name}: {imports.render(hints[field])}"
        if f.required:
            return typed
        if f.default is msgspec.NODEFAULT:
            raise TypeError(f"{spec.name}: {field} has a default factory")
        return f"{typed} = {_default(f.default)}"

    params = ["self", *(param(f) for f in by_field)]
    rest = [f for f in fields if f not in by_field]
    if rest:
        params += ["*", *(param(f) for f in rest)]
    result: object = spec.result
    if py.unwrap is not None:
        result = typing.get_type_hints(spec.result)[py.unwrap]
    returns = imports.render(result)
    lines = _call(f"async def {py.name}(", params, f") -> {returns}:", "    ")
    doc = spec.summary if not py.doc else f"{spec.summary.rstrip('.')}. {py.doc}"
    lines += _docstring(doc, "        ")
    if spec.params is NoParams:
        imports.need("contracts.rpc.jsonrpc", "NoParams")
        build = "NoParams()"
    else:
        imports.need("contracts.rpc.jsonrpc", "new_params")
        kwargs = [f"{f}={by_field.get(f, f)}" for f in fields]
        build = f"new_params({', '.join([imports.render(spec.params), *kwargs])})"
    call = f"await self.call({constant}, {build})"
    one = f"        return ({call}).{py.unwrap}" if py.unwrap else f"        return {call}"
    if len(one) <= LINE_WIDTH or build == "NoParams()":
        return [*lines, one]
    lines += _call("params = new_params(", [imports.render(spec.params), *kwargs], ")", "        ")
    return [*lines, one.replace(build, "params")]


def render() -> str:
    imports = _Imports()
    imports.need("typing", "TYPE_CHECKING")
    imports.need("contracts.rpc.jsonrpc", "MethodSpec")
    imports.need("contracts.rpc.jsonrpc", "P")
    imports.need("contracts.rpc.jsonrpc", "R")
    constants = {id(v): (m, n) for m, n, v in _definitions() if isinstance(v, MethodSpec)}
    methods: list[str] = []
    taken: set[str] = set()
    for spec in GATEWAY_METHODS:
        if spec.name in HAND_WRITTEN:
            continue
        py = client_method(spec)
        if py.name in taken:
            raise ValueError(f"two methods are called {py.name}")
        taken.add(py.name)
        constant = imports.need(*constants[id(spec)])
        methods += ["", *_method(spec, py, imports, constant)]
    head = [
        '"""The gateway\'s methods, one per MethodSpec: generated by `python -m codegen`.',
        "",
        "Do not edit by hand: tests/unit/test_pyclient.py fails when this file is stale.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        *imports.lines(),
        "",
        "",
        "class GatewayMethods:",
        '    """What FleetClient inherits: each gateway method not in codegen.pyclient\'s',
        '    HAND_WRITTEN, through ``call`` (ClientCore\'s, which retries Unavailable)."""',
        "",
        "    if TYPE_CHECKING:",
        "",
        "        async def call(",
        "            self,",
        "            spec: MethodSpec[P, R],",
        "            params: P,",
        "            *,",
        "            timeout_s: float | None = None,",
        "            resend_cut: bool = False,",
        "        ) -> R: ...",
    ]
    return "\n".join([*head, *methods]) + "\n"
