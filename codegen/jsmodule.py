"""The web console's contract module, ``services/gateway/static/contract.js``, from contracts/.

The console (plain JavaScript, no build step) spells no method name, error code, id pattern or
status of its own: it imports them from this generated ES module. Constant names are derived
mechanically: ``machines.refreshEnv`` is ``METHODS.MACHINES_REFRESH_ENV``, ``NotFound`` is
``ERRORS.NOT_FOUND``, ``MACHINE_ID_RE`` is ``ID_PATTERNS.MACHINE_ID``.

The .env precedence (which scope's value a machine gets) is applied in one Python function,
``base.dotenv.merge_env``. The console needs it to show which value wins:
``ENV_SCOPES_BY_PRECEDENCE`` is the order of ``contracts.models.EnvScope``, lowest precedence
first, and the drift test calls ``merge_env`` to prove the two agree.

``python -m codegen`` writes the file with the other generated ones (``codegen.generated``);
``tests/unit/test_codegen.py`` fails when the committed file is stale.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import get_args

import msgspec
import msgspec.inspect

from codegen.generated import REPO
from contracts import ids, ports, validation
from contracts.bus.subjects import EventKind
from contracts.errors import ERRORS
from contracts.gateway import codemode, live
from contracts.gateway.rpc import GATEWAY_METHODS
from contracts.models import CodeStatus, EnvScope, ProviderName, Runtime
from contracts.status import STARTABLE, STOPPABLE, TERMINAL, MachineStatus

#: Where the committed module lives, relative to the repository root.
MODULE_PATH = REPO / "services" / "gateway" / "static" / "contract.js"
#: biome.json's formatter.lineWidth.
LINE_WIDTH = 100

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: Python-only regex syntax that JavaScript would read differently (or not at all).
_NOT_JS = ("(?P", "\\A", "\\Z", "(?#", "(?i", "(?x", "(?s", "(?m", "(?a")


def constant_name(name: str) -> str:
    """``machines.refreshEnv``: ``MACHINES_REFRESH_ENV``; ``DaemonTimeout``: ``DAEMON_TIMEOUT``."""
    parts = re.split(r"[.\-]", name)
    out = "_".join(_CAMEL_BOUNDARY.sub("_", part).upper() for part in parts)
    if not _CONSTANT.fullmatch(out):
        raise ValueError(f"cannot make a JavaScript constant name from {name!r}")
    return out


def _unique(pairs: Iterable[tuple[str, object]], what: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"two {what} map to the constant {key}")
        out[key] = value
    return out


def methods() -> dict[str, object]:
    return _unique(((constant_name(m.name), m.name) for m in GATEWAY_METHODS), "methods")


def errors() -> dict[str, object]:
    return _unique(((constant_name(cls.__name__), code) for code, cls in ERRORS.items()), "errors")


def error_http_statuses() -> dict[str, object]:
    """Each error kind's HTTP status (contracts.errors: what a route answering one call
    with it answers)."""
    return {constant_name(cls.__name__): cls.http_status for cls in ERRORS.values()}


def _js_pattern(pattern: str, where: str) -> str:
    if not pattern.isascii() or any(bad in pattern for bad in _NOT_JS):
        raise ValueError(f"{where} uses regex syntax JavaScript does not share: {pattern!r}")
    return pattern


def id_patterns() -> dict[str, object]:
    """Every ``*_ID_RE`` of contracts.ids, anchored as in Python."""
    found = {
        name.removesuffix("_RE"): _js_pattern(value.pattern, f"contracts.ids.{name}")
        for name, value in sorted(vars(ids).items())
        if name.endswith("_ID_RE") and isinstance(value, re.Pattern)
    }
    if not found:
        raise ValueError("contracts.ids has no *_ID_RE patterns")
    return dict(found)


def max_length(params_name: str, field: str) -> int:
    """The longest string the gateway accepts in ``field`` of the params of a method."""
    spec = next(m for m in GATEWAY_METHODS if m.name == params_name)
    info = msgspec.inspect.type_info(spec.params)
    for f in info.fields if isinstance(info, msgspec.inspect.StructType) else ():
        ftype = f.type
        if f.encode_name == field and isinstance(ftype, msgspec.inspect.StrType):
            if ftype.max_length is None:
                break
            return ftype.max_length
    raise ValueError(f"{params_name} has no string field {field!r} with a maximum length")


def limits() -> dict[str, object]:
    return {
        "INSTANCE_NAME_MAX": max_length("instances.create", "name"),
        "TOKEN_NAME_MAX": max_length("tokens.create", "name"),
    }


def statuses() -> dict[str, object]:
    return {s.name: s.value for s in MachineStatus}


def event_types() -> dict[str, object]:
    return {k.name: k.value for k in EventKind}


def env_scopes_by_precedence() -> list[str]:
    """The env scopes, lowest precedence first: ``contracts.models.EnvScope`` in its order.

    ``base.dotenv.merge_env`` applies them in this order (a later scope's value wins);
    tests/unit/test_console_contract.py checks that it does.
    """
    return list(get_args(EnvScope))


def codemode_stream() -> dict[str, object]:
    return {
        "PATH": codemode.RUN_STREAM_PATH,
        "END": codemode.RUN_STREAM_END,
        "DEFAULT_TIMEOUT_S": int(codemode.DEFAULT_TIMEOUT_S),
        "MAX_TIMEOUT_S": int(codemode.MAX_TIMEOUT_S),
        "MAX_CODE_BYTES": codemode.MAX_CODE_BYTES,
    }


def codemode_events() -> dict[str, object]:
    tags = [cls.__struct_config__.tag for cls in get_args(codemode.RunEvent)]
    return {constant_name(str(tag)): tag for tag in tags}


def _literal(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"not a string or integer: {value!r}")
    return json.dumps(value)


def _frozen_object(doc: str, name: str, entries: dict[str, object]) -> str:
    body = "".join(f"  {key}: {_literal(value)},\n" for key, value in entries.items())
    return f"{_doc(doc)}export const {name} = Object.freeze({{\n{body}}});\n"


def _doc(doc: str) -> str:
    """A JSDoc comment: one line, or (``doc`` ending in a newline) a block."""
    return f"/**\n * {doc} */\n" if doc.endswith("\n") else f"/** {doc} */\n"


def _frozen_array(doc: str, name: str, values: Sequence[str]) -> str:
    line = f"export const {name} = Object.freeze([{', '.join(_literal(v) for v in values)}]);\n"
    if len(line) > LINE_WIDTH:  # one item a line, as Biome breaks it
        items = "".join(f"  {_literal(v)},\n" for v in values)
        line = f"export const {name} = Object.freeze([\n{items}]);\n"
    return _doc(doc) + line


def render() -> str:
    """The module's text, formatted as Biome formats it (``./run lint`` checks)."""
    terminal = [s.value for s in MachineStatus if s in TERMINAL]
    stoppable = [s.value for s in MachineStatus if s in STOPPABLE]
    startable = [s.value for s in MachineStatus if s in STARTABLE]
    sections = [
        "// Generated from contracts/ by `python -m codegen` (codegen/jsmodule.py): do not edit.\n"
        "// tests/unit/test_console_contract.py fails when this file is stale.\n",
        _frozen_object(
            "The gateway's JSON-RPC methods (contracts.gateway.rpc.GATEWAY_METHODS).",
            "METHODS",
            methods(),
        ),
        _frozen_object(
            "JSON-RPC error codes, by exception class (contracts.errors.ERRORS).",
            "ERRORS",
            errors(),
        ),
        _frozen_object(
            "The HTTP status of each error kind (FleetError.http_status).",
            "ERROR_HTTP_STATUS",
            error_http_statuses(),
        ),
        _frozen_object(
            "Id formats (contracts.ids), anchored: new RegExp(ID_PATTERNS.MACHINE_ID).",
            "ID_PATTERNS",
            id_patterns(),
        ),
        "/** Every id is exactly this long (contracts.ids.ID_LENGTH). */\n"
        f"export const ID_LENGTH = {_literal(ids.ID_LENGTH)};\n",
        _frozen_object(
            "Input limits of the gateway's params (from their msgspec constraints).",
            "LIMITS",
            limits(),
        ),
        "/** An env var name (contracts.validation.ENV_NAME_PATTERN), anchored. */\n"
        "export const ENV_NAME_PATTERN = "
        f"{_literal(_js_pattern(validation.ENV_NAME_PATTERN, 'ENV_NAME_PATTERN'))};\n",
        _frozen_object("Machine statuses (contracts.status.MachineStatus).", "STATUS", statuses()),
        _frozen_array(
            "Statuses nothing but archiving moves a machine from (contracts.status.TERMINAL).",
            "TERMINAL_STATUSES",
            terminal,
        ),
        _frozen_array(
            "Statuses a machine can be stopped from (contracts.status.STOPPABLE).",
            "STOPPABLE_STATUSES",
            stoppable,
        ),
        _frozen_array(
            "Statuses machines.start starts from, a failed one only with an externalId "
            "(contracts.status.STARTABLE).",
            "STARTABLE_STATUSES",
            startable,
        ),
        _frozen_array(
            "Machine providers (contracts.models.ProviderName).",
            "PROVIDERS",
            list(get_args(ProviderName)),
        ),
        _frozen_object(
            "Machine runtimes (contracts.models.Runtime).",
            "RUNTIME",
            {constant_name(v): v for v in get_args(Runtime)},
        ),
        _frozen_object(
            "How a daemon's code relates to the platform's (contracts.models.CodeStatus).",
            "CODE_STATUS",
            {constant_name(v): v for v in get_args(CodeStatus)},
        ),
        _frozen_object(
            "Machine event types, the `type` of each event (contracts.bus.subjects.EventKind).",
            "EVENT_TYPES",
            event_types(),
        ),
        _frozen_object(
            "Streamed answers (contracts.gateway.live): POST PATH, SSE events OUTPUT then RESULT.",
            "STREAMING",
            {"PATH": live.RPC_STREAM_PATH, "OUTPUT": live.SSE_OUTPUT, "RESULT": live.SSE_RESULT},
        ),
        _frozen_object(
            "Preview URLs (contracts.ports): TICKET_PARAM carries a machines.previewTicket.",
            "PORTS",
            {"TICKET_PARAM": ports.PREVIEW_TICKET_PARAM},
        ),
        _frozen_object(
            "Codemode (contracts.gateway.codemode): POST PATH with codemode.run's params streams\n"
            " * the run's events (SSE, `event:` the event's type), then END with the result.\n",
            "CODEMODE",
            codemode_stream(),
        ),
        _frozen_object(
            "Codemode run event types, the `type` of each event\n"
            " * (contracts.gateway.codemode.RunEvent).",
            "CODEMODE_EVENTS",
            codemode_events(),
        ),
        _frozen_array(
            "Env var scopes, lowest precedence first: a machine's .env gets the value of the\n"
            " * last scope that sets a name, as base.dotenv.merge_env merges them (a test\n"
            " * checks).\n",
            "ENV_SCOPES_BY_PRECEDENCE",
            env_scopes_by_precedence(),
        ),
    ]
    return "\n".join(sections)
