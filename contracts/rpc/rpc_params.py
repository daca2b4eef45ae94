"""A request's params: taken by name, their errors named by a JSON path."""

from __future__ import annotations

import re

import msgspec

from contracts.errors import InvalidParams
from contracts.ids import ID_FIELDS, ID_LENGTH, not_an_id

_FIELD_AT = re.compile(r"at `(\$[^`]*)`")
_FIELD_NAMED = re.compile(r"field `([^`]+)`")
#: msgspec's words for a string that does not fit an id type (contracts/gateway/types.py's
#: MachineId ...): its length is checked first, so most bad ids get the length's message.
_ID_MISFIT = re.compile(
    rf"^Expected `str` (?:of length [<>]= {ID_LENGTH}|matching regex '\^(\w)-\[0-9a-f\]\{{16\}}\$')"
)
_LAST_NAME = re.compile(r"\.(\w+)(?:\[\d+\])?$")


def invalid_params(exc: msgspec.ValidationError) -> InvalidParams:
    """An InvalidParams that names the field msgspec complained about, as a JSON path."""
    text = str(exc)
    at = _FIELD_AT.search(text)
    named = _FIELD_NAMED.search(text)
    path = at.group(1) if at else "$"
    if named:  # "Object missing required field `x`" / "Object contains unknown field `x`"
        path = f"{path}.{named.group(1)}"
    prefix = _id_prefix(text, path)
    if prefix:
        return InvalidParams(f"invalid params: {not_an_id(f'`{path}`', prefix)}", field=path)
    return InvalidParams(f"invalid params: {text}", field=path)


def _id_prefix(text: str, path: str) -> str | None:
    """The prefix of the id kind that ``path`` takes, when ``text`` says it got no such id."""
    misfit = _ID_MISFIT.match(text)
    if not misfit:
        return None
    if misfit.group(1):
        return misfit.group(1)
    last = _LAST_NAME.search(path)
    return ID_FIELDS.get(last.group(1)) if last else None


def by_name(params: msgspec.Raw) -> msgspec.Raw | bytes:
    """Every method takes its params by name; an empty array is "no params" too (JSON-RPC
    allows it, and clients such as the official OpenRPC one send ``[]`` when given none)."""
    raw = bytes(params).strip()
    if raw[:1] != b"[":
        return params
    if raw[1:].lstrip() == b"]":
        return b"{}"
    raise InvalidParams("params must be an object: every method takes them by name", field="$")
