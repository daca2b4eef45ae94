"""The OpenRPC document of the gateway's API, generated from the method table."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypeAlias

import msgspec

from contracts.errors import ERRORS
from contracts.rpc.json_schema import schema_components
from contracts.rpc.jsonrpc import AnySpec

OPENRPC_VERSION = "1.3.2"
#: An OpenRPC document (``rpc.discover``'s result): free-form JSON, described by the OpenRPC
#: meta-schema rather than by a Struct of ours.
OpenRpcDocument: TypeAlias = dict[str, Any]


def openrpc_document(
    methods: Sequence[AnySpec], *, title: str, version: str, server_url: str | None = None
) -> OpenRpcDocument:
    types = [m.params for m in methods] + [m.result for m in methods]
    schemas, components = schema_components(types, ref_template="#/components/schemas/{name}")
    schema_list, components = _unclash(list(schemas), components, methods)
    n = len(methods)
    entries = [
        _method(m, components, schema_list[i], schema_list[n + i]) for i, m in enumerate(methods)
    ]
    doc: OpenRpcDocument = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version, "license": {"name": "Apache-2.0"}},
        "methods": entries,
        # Every code a caller may meet, including the protocol errors any method can answer
        # (-32700 .. -32603, 1001 for a bad token), which the methods do not repeat.
        "components": {"schemas": _used(entries, components), "errors": _error_catalog()},
    }
    if server_url:
        doc["servers"] = [{"name": "gateway", "url": server_url}]
    return doc


def _method(
    spec: AnySpec,
    components: dict[str, Any],
    params_ref: dict[str, Any],
    result_schema: dict[str, Any],
) -> dict[str, Any]:
    props = components[params_ref["$ref"].rsplit("/", 1)[1]].get("properties", {})
    # The spec: "all optional params MUST be positioned after all required params". Sorting
    # here (stable: declaration order within each group) leaves the structs' field order,
    # which is also their constructors' order, alone.
    fields = sorted(msgspec.structs.fields(spec.params), key=lambda f: not f.required)
    params = [
        {"name": f.encode_name, "required": f.required, "schema": props.get(f.encode_name, {})}
        for f in fields
    ]
    return {
        "name": spec.name,
        "summary": spec.summary,
        "paramStructure": "by-name",
        "params": params,
        "result": {"name": "result", "schema": result_schema},
        "errors": [{"code": e.code, "message": e.__name__} for e in spec.errors],
    }


def _used(entries: list[dict[str, Any]], components: dict[str, Any]) -> dict[str, Any]:
    """The schemas the methods refer to, directly or not: a params struct is spelled out param
    by param, so its own schema would only be an unused component (linters flag those)."""
    prefix = "#/components/schemas/"
    seen: set[str] = set()
    todo = [json.dumps(entries)]
    while todo:
        for ref in re.findall(r'"\$ref": "' + re.escape(prefix) + r'([^"]+)"', todo.pop()):
            if ref not in seen:
                seen.add(ref)
                todo.append(json.dumps(components[ref]))
    return {name: schema for name, schema in components.items() if name in seen}


def method_type_name(method: str) -> str:
    """The type name code generators derive from a method name: ``env.list`` -> ``EnvList``."""
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", method) if w)


def _unclash(
    schemas: list[dict[str, Any]], components: dict[str, Any], methods: Sequence[AnySpec]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rename the schemas whose name (and title) is the type name a generator derives from a
    method (``EnvList``, the result of ``env.list``, would collide with the method's own
    type): they get a ``Result`` suffix, and every ``$ref`` follows."""
    taken = {method_type_name(m.name) for m in methods}
    renames: dict[str, str] = {}
    for name in components:
        if name in taken:
            new = name + "Result"
            while new in components or new in taken:
                new += "_"
            renames[name] = new
    if not renames:
        return schemas, components
    text = json.dumps([schemas, components])
    for old, new in renames.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    schemas, components = json.loads(text)
    for old, new in renames.items():
        schema = components.pop(old)
        if schema.get("title") == old:
            schema["title"] = new
        components[new] = schema
    return schemas, dict(sorted(components.items()))


def _error_catalog() -> dict[str, dict[str, Any]]:
    return {cls.__name__: {"code": cls.code, "message": cls.__name__} for cls in ERRORS.values()}
