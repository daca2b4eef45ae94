"""A request's params: taken by name, their errors named by a JSON path."""

from __future__ import annotations

import re

import msgspec

from contracts.errors import InvalidParams

_FIELD_AT = re.compile(r"at `(\$[^`]*)`")
_FIELD_NAMED = re.compile(r"field `([^`]+)`")


def invalid_params(exc: msgspec.ValidationError) -> InvalidParams:
    """An InvalidParams that names the field msgspec complained about, as a JSON path."""
    text = str(exc)
    at = _FIELD_AT.search(text)
    named = _FIELD_NAMED.search(text)
    path = at.group(1) if at else "$"
    if named:  # "Object missing required field `x`" / "Object contains unknown field `x`"
        path = f"{path}.{named.group(1)}"
    return InvalidParams(f"invalid params: {text}", field=path)


def by_name(params: msgspec.Raw) -> msgspec.Raw | bytes:
    """Every method takes its params by name; an empty array is "no params" too (JSON-RPC
    allows it, and clients such as the official OpenRPC one send ``[]`` when given none)."""
    raw = bytes(params).strip()
    if raw[:1] != b"[":
        return params
    if raw[1:].lstrip() == b"]":
        return b"{}"
    raise InvalidParams("params must be an object: every method takes them by name", field="$")
