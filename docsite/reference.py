"""The reference pages, generated from the code: gateway and daemon methods from the OpenRPC
document (contracts/rpc/openrpc.py), error codes from contracts/errors.py, events from the AsyncAPI
document (contracts/bus/asyncapi.py), the CLI from its argparse parser (fleet/cli/entry.py),
settings
from ``Settings`` and ``DaemonSettings``. The human notes beside them are in ``notes.yml``.

Each ``*_page`` function returns a whole Markdown page; ``PAGES`` maps site paths to them.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec

from contracts.bus.asyncapi import asyncapi_document, package_version
from contracts.daemon.rpc import DAEMON_METHODS
from contracts.errors import ERRORS
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.rpc.jsonrpc import AnySpec
from contracts.rpc.openrpc import openrpc_document
from controlplane.settings import PREFIX, Settings
from daemon.settings import DaemonSettings
from docsite.schema_text import cell, default_text, describe, record_table, ref_name

ROOT = Path(__file__).resolve().parent.parent
NOTES_PATH = Path(__file__).resolve().parent / "notes.yml"
GENERATED = "<!-- Generated from the code at build time (docsite/reference.py): do not edit. -->"


def notes() -> dict[str, Any]:
    loaded: dict[str, Any] = msgspec.yaml.decode(NOTES_PATH.read_bytes())
    return loaded


# --- methods ----------------------------------------------------------------------------------
def _methods_md(specs: tuple[AnySpec, ...], title: str, intro: str, notes_key: str) -> str:
    doc = openrpc_document(specs, title=title, version=package_version())
    said: dict[str, dict[str, str]] = notes().get(notes_key, {})
    out = [f"# {title}", "", GENERATED, "", intro, ""]
    out += ["| method | what |", "|---|---|"]
    out += [
        f"| [`{m['name']}`](#{_anchor(m['name'])}) | {cell(m['summary'])} |" for m in doc["methods"]
    ]
    out.append("")
    for m in doc["methods"]:
        out += _method_md(m, said.get(m["name"], {}))
    out += ["## Records", "", "The types the methods take and answer (camelCase on the wire).", ""]
    for name, schema in doc["components"]["schemas"].items():
        out += record_table(name, schema)
    return "\n".join(out) + "\n"


def _method_md(m: dict[str, Any], said: dict[str, str]) -> list[str]:
    out = [f"## `{m['name']}` {{ #{_anchor(m['name'])} }}", "", cell(m["summary"]), ""]
    if m["params"]:
        out += ["| param | type | required | default |", "|---|---|---|---|"]
        for p in m["params"]:
            req = "yes" if p["required"] else ""
            sch = p["schema"]
            out.append(f"| `{p['name']}` | {describe(sch)} | {req} | {default_text(sch)} |")
        out.append("")
    else:
        out += ["No params.", ""]
    result = m["result"]["schema"]
    out += [f"**Result**: {describe(result)}", ""]
    if m["errors"]:
        codes = ", ".join(
            f"[{e['code']} {e['message']}](errors.md#{e['code']})" for e in m["errors"]
        )
        out += [f"**Errors**: {codes}", ""]
    if said:
        out += [f"**Params, in short**: {said.get('params', '')}", ""]
        out += [f"**Answers**: {said.get('result', '')}", ""]
    return out


def _anchor(name: str) -> str:
    return name.replace(".", "-").lower()


def gateway_page() -> str:
    intro = (
        "`POST /rpc` on the gateway, JSON-RPC 2.0, params by name. `rpc.discover` answers the "
        "same as an [OpenRPC](https://spec.open-rpc.org/) document. Every method may also answer "
        "the protocol errors and 1001 (see [error codes](errors.md)). "
        "IDs: instances `i-` + 16 hex digits, machines `m-` + 16 hex digits."
    )
    return _methods_md(GATEWAY_METHODS, "Gateway methods", intro, "methods")


def daemon_page() -> str:
    intro = (
        "JSON-RPC 2.0 over NATS request/reply on `daemon.<machineId>.rpc`, signed both ways. "
        "Only the platform calls these; the gateway's `machines.*` methods forward to them."
    )
    return _methods_md(DAEMON_METHODS, "Daemon RPC", intro, "daemonMethods")


# --- errors -----------------------------------------------------------------------------------
def errors_page() -> str:
    when: dict[int, str] = notes()["errors"]
    out = ["# Error codes", "", GENERATED, ""]
    out += [
        "From `contracts/errors.py`; clients may switch on `error.code`. `InvalidParams` "
        "carries `data.field`, a JSON path such as `$.machineId`. HTTP is the status of every "
        "route that answers one call with the error (files, a session's attach, a tunnel, a "
        "preview, GET /events), with the JSON-RPC error as its body and in the `X-Fleet-Error` "
        "header; `POST /rpc` answers a call it dispatched with 200 (1501 alone with 503).",
        "",
        "| code | name | HTTP | when |",
        "|---|---|---|---|",
    ]
    for code, cls in sorted(ERRORS.items()):
        doc = inspect.getdoc(cls) if cls.__doc__ else ""
        text = cell(when.get(code, "") or doc or "")
        out.append(
            f'| <span id="{code}"></span>{code} | {cls.__name__} | {cls.http_status} | {text} |'
        )
    return "\n".join(out) + "\n"


# --- events -----------------------------------------------------------------------------------
def events_page() -> str:
    doc = asyncapi_document()
    messages: dict[str, Any] = doc["components"]["messages"]
    schemas: dict[str, Any] = doc["components"]["schemas"]
    out = ["# Events and subjects", "", GENERATED, ""]
    out += [
        "Every NATS subject fleetd uses, from the AsyncAPI 3.0 document "
        "([asyncapi.json](../asyncapi.json), made by `contracts/bus/asyncapi.py`). What the events "
        "mean, and how to read them: [Events](../events.md).",
        "",
        "| channel | subject | messages |",
        "|---|---|---|",
    ]
    for name, channel in doc["channels"].items():
        msgs = ", ".join(f"[{m}](#{m.lower()})" for m in channel.get("messages", {}))
        out.append(f"| {name} | `{channel['address']}` | {msgs} |")
    out.append("")
    for name, channel in doc["channels"].items():
        out += [f"## {name}", "", f"Subject `{channel['address']}`.", ""]
        if channel.get("description"):
            out += [cell(channel["description"]), ""]
        for key, param in channel.get("parameters", {}).items():
            out += [f"- `{{{key}}}`: {cell(param.get('description', ''))}"]
        out.append("")
        for msg in channel.get("messages", {}):
            out += _message_md(msg, messages.get(msg, {}), schemas)
    payloads = {ref_name(m.get("payload", {})) for m in messages.values()}
    out += ["## Other types", "", "Types the payloads above refer to.", ""]
    for name, schema in schemas.items():
        if name not in payloads:
            out += record_table(name, schema)
    return "\n".join(out) + "\n"


def _message_md(name: str, msg: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    out = [f"### {name}", ""]
    if msg.get("summary"):
        out += [cell(msg["summary"]), ""]
    payload = msg.get("payload", {})
    target = ref_name(payload)
    schema = schemas.get(target, payload) if target else payload
    return out + record_table(f"{name} payload", schema)[2:]


# --- CLI --------------------------------------------------------------------------------------
def cli_page() -> str:
    root = _root_parser()
    out = ["# The `fleet` CLI", "", GENERATED, ""]
    out += [
        "Every command's `--help`, from the parser itself (`fleet/cli/`). Exit codes and the "
        "output formats: [the CLI guide](../cli.md).",
        "",
    ]
    for path, parser in _walk(root, ["fleet"]):
        out += [f"## `{' '.join(path)}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out) + "\n"


def _root_parser() -> argparse.ArgumentParser:
    from fleet.cli import entry as cli

    # The help text names defaults from the environment (FLEET_URL): print the documented ones.
    saved = {k: os.environ.pop(k) for k in ("FLEET_URL", "COLUMNS") if k in os.environ}
    os.environ["COLUMNS"] = "100"
    try:
        return cli._parser()
    finally:
        os.environ.pop("COLUMNS")
        os.environ.update(saved)


def _walk(
    parser: argparse.ArgumentParser, path: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, [*path, name])


# --- settings ---------------------------------------------------------------------------------
def settings_page() -> str:
    said = notes()
    out = ["# Settings", "", GENERATED, ""]
    out += [
        "Services read `FLEET_*` environment variables into one `Settings` object "
        "(`controlplane/settings.py`); a malformed value stops the service with exit code 2, "
        "naming the variable. `fleet up` passes every `FLEET_*` variable of its environment on "
        "to the services; its flags win. A production example with comments: "
        "`deploy/fleetd.env.example`.",
        "",
        "| variable | type | default | used by | meaning |",
        "|---|---|---|---|---|",
    ]
    out += _settings_rows(Settings, said["settings"])
    out += [
        "",
        "## The daemon's settings",
        "",
        "The daemon (`daemon/settings.py`) reads its own; the machine's provider sets them.",
        "",
        "| variable | type | default | used by | meaning |",
        "|---|---|---|---|---|",
    ]
    out += _settings_rows(DaemonSettings, said["daemonSettings"])
    out += [
        "",
        "## Read outside `Settings`",
        "",
        "| variable | read by | meaning |",
        "|---|---|---|",
    ]
    for env, where in OTHER_VARIABLES.items():
        note = said["settings"].get(env, {})
        out.append(f"| `{env}` | `{where}` | {cell(note.get('meaning', ''))} |")
    return "\n".join(out) + "\n"


#: Variables read by one module rather than through ``Settings``: the module that reads each.
OTHER_VARIABLES = {
    "FLEET_REDIS_PASSWORD": "fleet/up/stack.py",
    "FLEET_SWARM_HOST_SIZE": "providers/swarm.py",
    "DOCKER_HOST": "aiodocker",
}


def _settings_rows(cls: type[msgspec.Struct], said: dict[str, Any]) -> list[str]:
    comments = field_comments(cls)
    rows = []
    for f in msgspec.structs.fields(cls):
        env = PREFIX + f.name.upper()
        note = said.get(env, {})
        meaning = note.get("meaning", "") if isinstance(note, dict) else str(note)
        used_by = note.get("usedBy", "") if isinstance(note, dict) else ""
        text = meaning or comments.get(f.name, "")
        rows.append(
            f'| <span id="{env.lower()}"></span>`{env}` | `{_type_name(f.type)}` | '
            f"{_default(f)} | {cell(used_by)} | {cell(text)} |"
        )
    return rows


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comments written above each field of a class, by field name."""
    lines = inspect.getsource(cls).splitlines()
    tree = ast.parse("\n".join(lines).strip() if lines[0].startswith(" ") else "\n".join(lines))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                above.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if above:
                found[node.target.id] = " ".join(above)
    return found


def _type_name(tp: Any) -> str:
    if getattr(tp, "__origin__", None) is Literal:
        return " or ".join(json.dumps(v) for v in tp.__args__)
    text = getattr(tp, "__name__", None) or str(tp)
    return text.replace("typing.", "").replace("|", "or")


def _default(f: msgspec.structs.FieldInfo) -> str:
    if f.required:
        return "required"
    if f.default_factory is not msgspec.NODEFAULT:
        # A computed default (the host's name): the factory's doc says what it is.
        factory = f.default_factory
        return f"computed (`{getattr(factory, '__qualname__', repr(factory))}()`)"
    value = f.default
    if value in ("", None):
        return "empty"
    return f"`{json.dumps(value) if isinstance(value, str) else value}`"


PAGES: dict[str, Callable[[], str]] = {
    "reference/gateway.md": gateway_page,
    "reference/errors.md": errors_page,
    "reference/events.md": events_page,
    "reference/daemon.md": daemon_page,
    "reference/cli.md": cli_page,
    "reference/settings.md": settings_page,
}
