"""The audit log: who did what to which instance and machine, on a JetStream stream of its own.

An entry is JSON on ``audit.<scope>.<machine>`` (the scope an instance id or ``platform``, the
machine an id or ``none``), stored in ``AUDIT_STREAM``. The stream lives in a NATS account of
its own whose only user is the gateway's audit credential: no service and no machine can
publish there, read it or change it (the server's account isolation enforces it).

Params and results are recorded with their secrets redacted by one table (``REDACTIONS``): a
field's name decides what is kept of its value, wherever it is nested.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import msgspec

from contracts.bus.events import now
from contracts.errors import Forbidden, InvalidParams
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: The JetStream stream of audit entries (in the audit account).
AUDIT_STREAM = "FLEET_AUDIT"
#: Every entry (the stream's subjects; what the audit account's user may publish).
ALL_AUDIT = "audit.>"
#: The subject token of an entry about no instance (the platform) or about no machine.
PLATFORM_SCOPE = "platform"
NO_MACHINE = "none"
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def audit_subject(instance_id: str | None, machine_id: str | None) -> str:
    """``audit.<instanceId|platform>.<machineId|none>``; a character no subject token may hold
    becomes ``_`` (ids never have one)."""
    scope = _TOKEN.sub("_", instance_id) if instance_id else PLATFORM_SCOPE
    machine = _TOKEN.sub("_", machine_id) if machine_id else NO_MACHINE
    return f"audit.{scope}.{machine}"


def audit_filter(instance_id: str | None, machine_id: str | None) -> str:
    """The stream subject filter of entries about this instance and/or machine (None: any)."""
    scope = _TOKEN.sub("_", instance_id) if instance_id else "*"
    machine = _TOKEN.sub("_", machine_id) if machine_id else "*"
    return f"audit.{scope}.{machine}"


class Action:
    """What an entry of a call that is no JSON-RPC method records as its ``method``."""

    TERMINAL_ATTACH = "sessions.attach"
    FILE_DOWNLOAD = "files.download"
    FILE_UPLOAD = "files.upload"
    TUNNEL_OPEN = "tunnels.open"
    #: A sign-in through the OpenID provider (its error when refused), and a sign-out.
    SIGN_IN = "auth.signIn"
    SIGN_OUT = "auth.signOut"
    #: A request to a route that is no method, refused before it reached one (its token, its
    #: CSRF token): the event stream, a codemode run's stream, MCP.
    EVENTS_STREAM = "events.stream"
    CODEMODE_STREAM = "codemode.stream"
    MCP = "mcp"
    #: What a token or session held open (terminals, transfers, tunnels, event streams), cut
    #: because it stopped standing (revoked, expired, its user disabled) or its user's role no
    #: longer allows it (removed from the instance, demoted).
    STREAMS_CUT = "auth.streamsCut"
    #: A webhook endpoint disabled because its maker stopped standing or managing its scope.
    WEBHOOK_DISABLED = "webhooks.disabled"
    #: Refusals past their limit, counted: of no one, one entry per period; of a known caller,
    #: one entry per caller per period.
    SUPPRESSED = "audit.suppressed"
    #: A machine's first request sent with a secret added (``machine.secret-used``); its
    #: actor is ``EGRESS_PROXY``, its params the secret's name and the host.
    SECRET_FIRST_USE = "secrets.firstUse"  # noqa: S105 - an action's name, not a password


#: The actor of an entry the egress proxy's event made (no caller acted: a machine's request).
EGRESS_PROXY = "egress-proxy"


class AuditEntry(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """One audited action."""

    id: str
    #: Who: a token id (``admin`` for the operator's token) or a user id.
    actor: str
    #: The token the actor called with (same as ``actor`` for a token).
    token_id: str | None = None
    #: A JSON-RPC method, or an ``Action`` (a route that is no method).
    method: str
    instance_id: str | None = None
    machine_id: str | None = None
    #: The params, secrets redacted (``redact``).
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    ok: bool
    #: The result, secrets redacted (None on an error).
    result: Any = None
    #: The error's stable code (contracts.errors) and message, when it failed.
    error_code: int | None = None
    error: str | None = None
    client_address: str | None = None
    user_agent: str | None = None
    at: datetime = msgspec.field(default_factory=now)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(AuditEntry)
#: The most one entry takes on the stream, encoded: whatever a call carried, a flood of calls
#: fills the stream no faster than this many bytes each.
MAX_ENTRY_BYTES = 8 * 1024
#: The most an entry's params, or its result, take (encoded, redacted); past it only their
#: size and first keys are kept (``bounded``).
MAX_PART_BYTES = 3 * 1024
#: Keys of an over-size mapping named, each cut at this many characters.
_KEPT_KEYS, _KEY_CHARS = 8, 32
#: What an entry's strings are cut to when, all fields bounded, it is still past the cap.
_LAST_CUT = 64


def bounded(value: Any, what: str) -> Any:
    """``value`` (redacted builtins) if it encodes within ``MAX_PART_BYTES``, else a note of
    its size with its first keys."""
    if value is None:
        return None
    size = len(_ENCODER.encode(value))
    if size <= MAX_PART_BYTES:
        return value
    note: dict[str, Any] = {"…": f"{what} of {size} bytes: past the cap, not kept"}
    if isinstance(value, dict):
        note["keys"] = [str(k)[:_KEY_CHARS] for k in list(value)[:_KEPT_KEYS]]
    return note


def encode_entry(entry: AuditEntry) -> bytes:
    """The entry's JSON, within ``MAX_ENTRY_BYTES`` (an entry past it loses its params and
    result, and its strings are cut short)."""
    data = _ENCODER.encode(entry)
    if len(data) <= MAX_ENTRY_BYTES:
        return data
    cut = msgspec.structs.replace(
        entry, params={"…": f"an entry of {len(data)} bytes: past the cap, not kept"},
        result=None, method=entry.method[:_LAST_CUT], actor=entry.actor[:_LAST_CUT],
        token_id=_cut(entry.token_id), instance_id=_cut(entry.instance_id),
        machine_id=_cut(entry.machine_id), error=_cut(entry.error),
        client_address=_cut(entry.client_address), user_agent=_cut(entry.user_agent),
    )  # fmt: skip
    return _ENCODER.encode(cut)


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:_LAST_CUT]


def decode_entry(data: bytes) -> AuditEntry:
    return _DECODER.decode(data)


# --- redaction --------------------------------------------------------------------------------
class Redact(Enum):
    #: The value is replaced whole.
    SECRET = "secret"  # noqa: S105 - a rule's name, not a secret
    #: A mapping's keys are kept (env var names, header names), its values replaced.
    VALUES = "values"
    #: Bulk content (file contents, command output): replaced by its size.
    CONTENT = "content"
    #: A URL without its userinfo and query (credentials hide there).
    URL = "url"


#: By field name (camelCase, as on the wire), wherever the field is nested.
REDACTIONS: Mapping[str, Redact] = {
    "value": Redact.SECRET,
    "token": Redact.SECRET,
    "password": Redact.SECRET,
    "secret": Redact.SECRET,
    "clientSecret": Redact.SECRET,
    "authorization": Redact.SECRET,
    "ticket": Redact.SECRET,
    "cookie": Redact.SECRET,
    "privateKey": Redact.SECRET,
    "env": Redact.VALUES,
    "vars": Redact.VALUES,
    "headers": Redact.VALUES,
    "content": Redact.CONTENT,
    "code": Redact.CONTENT,
    "stdout": Redact.CONTENT,
    "stderr": Redact.CONTENT,
    "output": Redact.CONTENT,
    "lines": Redact.CONTENT,
    "data": Redact.CONTENT,
    "url": Redact.URL,
    "specUrl": Redact.URL,
    "baseUrl": Redact.URL,
}
REDACTED = "[redacted]"
#: Longer strings are cut (an entry stays small whatever a call carried).
MAX_STRING = 256
#: Items of a list or mapping kept; the rest are counted.
MAX_ITEMS = 32
_MAX_DEPTH = 6


def redact(value: Any, _depth: int = 0) -> Any:
    """``value`` (JSON-like builtins) with every field of ``REDACTIONS`` redacted, strings cut
    at ``MAX_STRING`` and containers at ``MAX_ITEMS``."""
    if isinstance(value, dict):
        if _depth >= _MAX_DEPTH:
            return REDACTED
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i == MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more"
                break
            rule = REDACTIONS.get(str(k))
            out[str(k)] = redact(v, _depth + 1) if rule is None else _apply(rule, v)
        return out
    if isinstance(value, list | tuple):
        if _depth >= _MAX_DEPTH:
            return REDACTED
        kept = [redact(v, _depth + 1) for v in value[:MAX_ITEMS]]
        return kept + ([f"… {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else [])
    if isinstance(value, str) and len(value) > MAX_STRING:
        return value[:MAX_STRING] + "…"
    return value


def _apply(rule: Redact, value: Any) -> Any:
    if value is None:
        return None
    if rule is Redact.SECRET:
        return REDACTED
    if rule is Redact.VALUES:
        return {str(k): REDACTED for k in value} if isinstance(value, dict) else REDACTED
    if rule is Redact.CONTENT:
        size = len(value) if isinstance(value, str | bytes | list | dict) else None
        return REDACTED if size is None else f"{REDACTED} ({size})"
    return _url(value) if isinstance(value, str) else REDACTED


def _url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme in ("", "file"):  # a path: nothing hides in it
        return redact(text)  # type: ignore[no-any-return]
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username or parts.password:
        netloc = f"{REDACTED}@{netloc}"
    query = REDACTED if parts.query else ""
    return str(redact(urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))))


# --- reading: audit.list ----------------------------------------------------------------------
#: Entries one audit.list answers, at most.
MAX_LIST = 1000
_Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)]
_Filter = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class AuditListParams(Params, kw_only=True):
    actor: _Filter | None = None
    instance_id: _Filter | None = None
    machine_id: _Filter | None = None
    method: _Filter | None = None
    #: Only entries at or after this time.
    since: datetime | None = None
    limit: _Limit = 100


class AuditEntries(Result, kw_only=True):
    #: Newest first.
    entries: list[AuditEntry]


AUDIT_LIST = MethodSpec(
    "audit.list",
    AuditListParams,
    AuditEntries,
    "Audit entries, newest first, filtered by actor, instance, machine, method and time "
    "(admins only).",
    (Forbidden, InvalidParams),
    scope="machines:read",
    reads=True,
    client=ClientMethod("audit", unwrap="entries"),
)

AUDIT_METHODS: tuple[AnySpec, ...] = (AUDIT_LIST,)
