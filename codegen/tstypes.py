"""The TypeScript SDK's types, ``sdk/typescript/src/generated.ts``, from the documents fleetd
produces: the gateway's OpenRPC document (every method's params and result), the AsyncAPI
document (the machine events ``GET /events`` streams, a union discriminated by ``type``) and the
error table (code, name, HTTP status, whether a client may send the call again).

The SDK types nothing of the API by hand: ``fleet.call(method, params)`` takes its types from
``Methods`` here. JSON Schema is turned into TypeScript as it is on the wire: a property not in
``required`` is optional, ``anyOf`` is a union, ``enum`` a union of literals.

``python -m codegen`` writes the file with the other generated ones (``codegen.generated``);
``tests/unit/test_codegen.py`` fails when the committed file is stale.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from codegen.generated import REPO
from contracts.bus.asyncapi import asyncapi_document
from contracts.daemon.code import CodeRunPart
from contracts.daemon.files import Uploaded
from contracts.daemon.rpc import OutputChunk
from contracts.daemon.watch import FileEvent
from contracts.errors import BY_STATUS, ERRORS, RETRYABLE
from contracts.gateway import live, sessions as gs, sse
from contracts.gateway.files import FILES_PREFIX
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.json_schema import schema_components
from contracts.rpc.openrpc import method_type_name, openrpc_document

#: Where the committed module lives, relative to the repository root.
MODULE_PATH = REPO / "sdk" / "typescript" / "src" / "generated.ts"
_REF = "#/components/schemas/"
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
#: The AsyncAPI channels of machine events start so (the heartbeat has no ``type``: left out).
_EVENT_CHANNEL = "machine."


def _key(name: str) -> str:
    return name if _IDENT.fullmatch(name) else json.dumps(name)


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    lines = [line.strip() for line in text.replace("*/", "* /").strip().splitlines()]
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


class _Types:
    """JSON Schema to TypeScript; ``$ref`` names go through ``rename`` (one document's names
    may be taken by the other's)."""

    def __init__(self, rename: dict[str, str] | None = None) -> None:
        self.rename = rename or {}

    def ts(self, schema: Any, indent: str = "") -> str:
        if not isinstance(schema, dict) or not schema:
            return "unknown"
        if "$ref" in schema:
            name = str(schema["$ref"]).removeprefix(_REF)
            return self.rename.get(name, name)
        if "anyOf" in schema or "oneOf" in schema:
            options: list[Any] = schema.get("anyOf") or schema.get("oneOf") or []
            parts = [self.ts(s, indent) for s in options]
            return " | ".join(dict.fromkeys(parts))
        if "enum" in schema:
            return " | ".join(json.dumps(v) for v in schema["enum"])
        if "const" in schema:
            return json.dumps(schema["const"])
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.ts({**schema, "type": k}, indent) for k in kind)
        simple = {"string": "string", "integer": "number", "number": "number",
                  "boolean": "boolean", "null": "null"}  # fmt: skip
        if kind in simple:
            return simple[kind]
        if kind == "array":
            item = self.ts(schema.get("items"), indent)
            return f"Array<{item}>"
        if kind == "object" or "properties" in schema:
            return self.obj(schema, indent)
        return "unknown"

    def obj(self, schema: dict[str, Any], indent: str) -> str:
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if not props:
            value = self.ts(extra, indent) if isinstance(extra, dict) else "unknown"
            return f"Record<string, {value}>"
        required = set(schema.get("required", []))
        inner = indent + "  "
        lines = ["{"]
        for name, sub in props.items():
            lines += _doc(sub.get("description") if isinstance(sub, dict) else None, inner)
            opt = "" if name in required else "?"
            lines.append(f"{inner}{_key(name)}{opt}: {self.ts(sub, inner)};")
        if isinstance(extra, dict):
            lines.append(f"{inner}[key: string]: unknown;")
        lines.append(indent + "}")
        return "\n".join(lines)

    def declare(self, name: str, schema: Any) -> list[str]:
        body = self.ts(schema)
        lines = _doc(schema.get("description") if isinstance(schema, dict) else None, "")
        if body.startswith("{"):
            return [*lines, f"export interface {name} {body}", ""]
        return [*lines, f"export type {name} = {body};", ""]


def _openrpc() -> dict[str, Any]:
    return openrpc_document(GATEWAY_METHODS, title="fleetd gateway", version="0")


def _method_section(doc: dict[str, Any], types: _Types) -> list[str]:
    out: list[str] = ["// --- methods: params and result of each ---", ""]
    table: list[str] = []
    for m in doc["methods"]:
        base = method_type_name(m["name"])
        params = {
            "type": "object",
            "properties": {p["name"]: p["schema"] for p in m["params"]},
            "required": [p["name"] for p in m["params"] if p.get("required")],
        }
        body = types.obj(params, "") if m["params"] else "Record<string, never>"
        out += _doc(f"`{m['name']}`'s params.", "")
        out += [f"export interface {base}Params {body}" if m["params"]
                else f"export type {base}Params = {body};", ""]  # fmt: skip
        result = m["result"]["schema"]
        if "$ref" in result:
            result_type = types.ts(result)
        else:
            out += types.declare(f"{base}Result", result)
            result_type = f"{base}Result"
        errors = ", ".join(str(e["code"]) for e in m["errors"])
        table += _doc(f"{m['summary']}\n\nErrors: {errors or 'the protocol errors only'}.", "  ")
        table.append(f'  "{m["name"]}": {{ params: {base}Params; result: {result_type} }};')
    out += ["/** Every method of the gateway: its params and its result. */",
            "export interface Methods {", *table, "}", "",
            "/** A method's name. */", "export type MethodName = keyof Methods;", "",
            "/** Every method of the OpenRPC document, in its order. */",
            "export const METHOD_NAMES = ["]  # fmt: skip
    out += [f'  "{m["name"]}",' for m in doc["methods"]]
    out += ["] as const satisfies readonly MethodName[];", ""]
    return out


def _event_section(
    asyncapi: dict[str, Any], taken: set[str]
) -> tuple[list[str], list[str], dict[str, str]]:
    """The event types (named ``<Schema>Event`` where the OpenRPC side has the name) and the
    union's members, in the document's order."""
    schemas: dict[str, Any] = asyncapi["components"]["schemas"]
    messages: dict[str, Any] = asyncapi["components"]["messages"]
    members: list[str] = []
    for channel in asyncapi["channels"].values():
        if not str(channel["address"]).startswith(_EVENT_CHANNEL):
            continue
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            name = message["payload"]["$ref"].removeprefix(_REF)
            if "type" in schemas[name].get("properties", {}):
                members.append(name)
    needed, todo = set[str](), list(members)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += re.findall(r'"\$ref": "' + re.escape(_REF) + r'([^"]+)"',
                               json.dumps(schemas[name]))  # fmt: skip
    rename = {n: (n + "Event" if n in taken else n) for n in needed}
    types = _Types(rename)
    out = ["// --- events: what GET /events streams, discriminated by `type` ---", ""]
    for name in sorted(needed):
        out += types.declare(rename[name], schemas[name])
    return out, [rename[n] for n in members], rename


def _error_section() -> list[str]:
    out = ["// --- errors: every code, its name, HTTP status, and whether it may be resent ---",
           "", "/** Each error code of the contract (contracts/errors.py). */",
           "export const ERRORS = {"]  # fmt: skip
    for code, cls in ERRORS.items():
        retry = "true" if code in RETRYABLE else "false"
        out.append(f'  "{code}": {{ name: "{cls.__name__}", httpStatus: {cls.http_status}, '
                   f"retryable: {retry} }},")  # fmt: skip
    out += ["} as const;", "",
            "/** The code an HTTP status stands for when an answer carries no error object. */",
            "export const CODE_BY_STATUS: Readonly<Record<number, number>> = {"]  # fmt: skip
    out += [f"  {status}: {cls.code}," for status, cls in sorted(BY_STATUS.items())]
    out += ["};", "", "/** An error code of the contract. */",
            "export type ErrorCode = keyof typeof ERRORS;",
            "/** An error name of the contract. */",
            "export type ErrorName = (typeof ERRORS)[ErrorCode][\"name\"];", ""]  # fmt: skip
    return out


#: What the HTTP routes beside ``/rpc`` carry: an upload's answer, a streamed exec's output,
#: a streamed code run's parts, a watch's changes, a terminal's control messages (text frames
#: of its WebSocket).
_ROUTE_TYPES: tuple[type[msgspec.Struct], ...] = (
    Uploaded, OutputChunk, CodeRunPart, FileEvent, gs.Resize, gs.Dropped, gs.Exited,
    gs.BadControl,
)  # fmt: skip


def _route_section(taken: set[str], components: dict[str, Any]) -> list[str]:
    """The route types; one that is an OpenRPC schema as well (a code run part's error) is
    that one, declared once."""
    _, schemas = schema_components(_ROUTE_TYPES, ref_template=_REF + "{name}")
    clash = sorted(n for n in set(schemas) & taken if schemas[n] != components.get(n))
    if clash:
        raise ValueError(f"route types named as OpenRPC schemas: {clash}")
    types = _Types()
    out = ["// --- the HTTP routes beside /rpc ---", ""]
    for name in sorted(set(schemas) - taken):
        out += types.declare(name, schemas[name])
    out += ["/** A terminal's control message from the gateway (a text frame). */",
            "export type ServerControl = Dropped | Exited | BadControl;", "",
            "/** The paths and names of the routes (contracts/). */", "export const ROUTES = {",
            f"  rpcStream: {json.dumps(live.RPC_STREAM_PATH)},",
            f"  sseOutput: {json.dumps(live.SSE_OUTPUT)},",
            f"  sseResult: {json.dumps(live.SSE_RESULT)},",
            f"  sseDropped: {json.dumps(live.SSE_DROPPED)},",
            f"  sseOverflow: {json.dumps(sse.OVERFLOW)},",
            f"  sseCaughtUp: {json.dumps(sse.CAUGHT_UP)},",
            f"  sseError: {json.dumps(sse.ERROR)},",
            f"  filesPrefix: {json.dumps(FILES_PREFIX)},",
            f"  attachPath: {json.dumps(gs.ATTACH_PATH)},",
            f"  closeAborted: {gs.CLOSE_ABORTED},",
            "} as const;", ""]  # fmt: skip
    return out


def render() -> str:
    doc = _openrpc()
    components: dict[str, Any] = doc["components"]["schemas"]
    types = _Types()
    out = [
        "// Generated from fleetd's OpenRPC and AsyncAPI documents by",
        "// `python -m codegen`: do not edit. The SDK's tests fail when it is stale.",
        "",
        "// --- schemas of the OpenRPC document ---",
        "",
    ]
    for name, schema in components.items():
        out += types.declare(name, schema)
    out += _method_section(doc, types)
    taken = set(components) | {method_type_name(m["name"]) + s for m in doc["methods"]
                               for s in ("Params", "Result")}  # fmt: skip
    events, members, _ = _event_section(asyncapi_document(version="0"), taken)
    out += events
    out += _route_section(taken, components)
    out += ["/** A machine event as GET /events streams it: switch on `type`. */",
            "export type FleetEvent =", *(f"  | {m}" for m in members[:-1]),
            f"  | {members[-1]};", "", "/** Every event `type`. */",
            'export type EventType = FleetEvent["type"];', ""]  # fmt: skip
    out += _error_section()
    return "\n".join(out)
