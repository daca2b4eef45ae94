"""Python type stubs (``.pyi`` text) from JSON Schema: the gateway's OpenRPC, the daemon's tool
params, OpenAPI operations and MCP tools all describe their inputs with it.

The stubs are for reading (an agent is handed them before it writes code); they must parse with
``ast.parse``. Every name taken from a schema is made a safe identifier, and every text taken from
one is put in a docstring through ``repr``, so a hostile spec cannot break out of the stub.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from contracts.rpc.jsonrpc import AnySpec

_NOT_IDENT = re.compile(r"[^0-9a-zA-Z_]")
HEADER = "from typing import Any, Literal, TypedDict\n\nclass ToolError(Exception):\n" + (
    "    code: int\n    message: str\n    data: Any\n"
)


def ident(name: str) -> str:
    out = _NOT_IDENT.sub("_", name) or "_"
    if out[0].isdigit() or keyword.iskeyword(out):
        out = f"_{out}"
    return out


def py_type(schema: Mapping[str, Any] | bool, depth: int = 0) -> str:
    """The Python annotation a JSON Schema describes (``Any`` where it cannot say)."""
    if not isinstance(schema, Mapping) or depth > 8:
        return "Any"
    if "$ref" in schema:
        return ident(str(schema["$ref"]).rsplit("/", 1)[-1])
    if "enum" in schema and isinstance(schema["enum"], list):
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"][:50]) + "]"
    if "const" in schema:
        return f"Literal[{schema['const']!r}]"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            parts = dict.fromkeys(py_type(s, depth + 1) for s in schema[key])
            return " | ".join(parts) or "Any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(py_type({**schema, "type": k}, depth + 1) for k in kind) or "Any"
    if kind == "array":
        return f"list[{py_type(schema.get('items', {}), depth + 1)}]"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"dict[str, {py_type(extra, depth + 1) if isinstance(extra, Mapping) else 'Any'}]"
    simple = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
    return simple.get(str(kind), "None" if kind == "null" else "Any")


def typed_dict(name: str, schema: Mapping[str, Any]) -> str:
    props = schema.get("properties") or {}
    lines = [f"class {ident(name)}(TypedDict, total=False):"]
    lines += [f"    {ident(k)}: {py_type(v)}" for k, v in props.items() if isinstance(v, Mapping)]
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines)


def signature(schema: Mapping[str, Any], positional: bool = False) -> str:
    """``*, a: int, b: str | None = None`` from an object schema (required ones first)."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    params = [f"{ident(k)}: {py_type(v)}" for k, v in props.items() if k in required]
    params += [f"{ident(k)}: {py_type(v)} = ..." for k, v in props.items() if k not in required]
    if not params:
        return "self"
    return "self, " + ("" if positional else "*, ") + ", ".join(params)


def method(name: str, params: Mapping[str, Any], result: str, doc: str, **kw: bool) -> str:
    head = f"    async def {ident(name)}({signature(params, **kw)}) -> {result}:"
    return f"{head}\n        {doc[:500]!r}\n        ..."


def _components(types: Sequence[type]) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    return list(schemas), components


def namespaced(provider: str, methods: Mapping[str, str], components: Mapping[str, Any]) -> str:
    """A provider whose methods have dotted names: one class per namespace, nested by dots."""
    tree: dict[str, Any] = {}
    for dotted, body in methods.items():
        node = tree
        *parts, _leaf = dotted.split(".")
        for part in parts:
            node = node.setdefault(part, {})
        node.setdefault("", []).append(body)
    out = [HEADER]
    out += [typed_dict(n, s) for n, s in components.items() if isinstance(s, Mapping)]
    out.append(_render_class(f"_{ident(provider)}", tree))
    out.append(f"{ident(provider)}: _{ident(provider)}")
    return "\n\n".join(out) + "\n"


def _render_class(name: str, node: Mapping[str, Any]) -> str:
    nested = [_render_class(f"{name}_{ident(k)}", v) for k, v in node.items() if k]
    lines = [f"class {name}:"]
    lines += [f"    {ident(k)}: {name}_{ident(k)}" for k in node if k]
    lines += node.get("", [])
    if len(lines) == 1:
        lines.append("    pass")
    return "\n\n".join([*nested, "\n".join(lines)])


def gateway_stubs(specs: Sequence[AnySpec]) -> str:
    """``fleet``: the gateway's methods, as their OpenRPC document describes them."""
    schemas, components = _components([t for s in specs for t in (s.params, s.result)])
    methods = {}
    for i, spec in enumerate(specs):
        params, result = schemas[2 * i], schemas[2 * i + 1]
        params = components.get(py_type(params), params)
        body = method(spec.name.rsplit(".", 1)[-1], params, py_type(result), spec.summary)
        methods[spec.name] = body
    return namespaced("fleet", methods, components)


def machine_stubs(tools: Mapping[str, AnySpec]) -> str:
    """``machine``: the daemon's tools as the gateway offers them, ``machineId`` bound."""
    specs = list(tools.values())
    schemas, components = _components([t for s in specs for t in (s.params, s.result)])
    lines = ["class _machine:"]
    for i, (name, spec) in enumerate(tools.items()):
        params = dict(components.get(py_type(schemas[2 * i]), {}))
        props = {k: v for k, v in (params.get("properties") or {}).items() if k != "machineId"}
        params = {**params, "properties": props}
        result = py_type(schemas[2 * i + 1])
        lines.append(method(name, params, result, spec.summary, positional=True))
    read = {
        "properties": {"path": {"type": "string"}, "encoding": {"enum": ["utf-8", "base64"]}},
        "required": ["path"],
    }
    lines.append(
        method(
            "read_file",
            read,
            "str",
            "A file's text (or, with encoding='base64', "
            "its bytes in base64); files of one message at most.",
            positional=True,
        )
    )
    parts = [HEADER, *(typed_dict(n, s) for n, s in components.items())]
    return "\n\n".join([*parts, "\n".join(lines), "machine: _machine"]) + "\n"
