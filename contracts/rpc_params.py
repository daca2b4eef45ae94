"""A request's params: taken by name, decoded in one pass with the envelope, errors named.

``OnePass``: a single JSON-RPC request decoded in one pass, its params straight into the
method's type.
The dispatcher's general path decodes a body three times over (the envelope with its params
kept raw, then the params into their type; the daemon peeked at the method before that too):
three passes over a 1 KiB tool.writeFile body, 2.3 µs of the daemon's time per call (bench 1).
Here one msgspec decoder takes the envelope and the params together: a tagged union of one
envelope type per method, tagged by ``method``, each holding that method's params type.

It is only a shortcut for requests that are plainly valid: anything it does not decode (a
batch, an unknown method, a missing or bad field, params as an array, a repeated ``method``
member, invalid JSON) returns None, and the caller takes the general path, which answers it
exactly as before. A request it does decode, the general path would have decoded to equal
params (tests/unit/jsonrpc/test_one_pass.py runs both on the same bodies).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Union

import msgspec

from contracts.errors import InvalidParams

#: The envelope's ``id`` member, as the general path's envelope has it.
RequestIdOrUnset = int | str | msgspec.UnsetType | None


class Decoded(msgspec.Struct, frozen=True):
    """One request: its envelope's members and its params, already of the method's type."""

    jsonrpc: str
    method: str
    id: RequestIdOrUnset
    params: Any


class OnePass:
    """Decodes a single request to any of ``methods`` (name -> params type) in one pass."""

    def __init__(self, methods: Mapping[str, type[Any]]) -> None:
        self._method_of: dict[type[Any], str] = {}
        for i, (name, params) in enumerate(methods.items()):
            fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
                ("jsonrpc", str),
                ("params", params),
                ("id", RequestIdOrUnset, msgspec.UNSET),
            ]
            envelope = msgspec.defstruct(
                f"_Envelope{i}", fields, tag_field="method", tag=name, forbid_unknown_fields=False
            )
            self._method_of[envelope] = name
        kinds = tuple(self._method_of)
        # A lone tagged struct would also take a body without "method": keep even one a union.
        self._decoder: msgspec.json.Decoder[Any] | None = (
            msgspec.json.Decoder(Union[(*kinds, _Never)]) if kinds else None
        )

    @staticmethod
    @functools.cache
    def of(methods: tuple[tuple[str, type[Any]], ...]) -> OnePass:
        """The decoder for this method table, made once per process: building one (a struct
        type per method and their union's decoder) costs ~0.5 ms, and a swarm host starts a
        Dispatcher for each of its hundreds of daemons."""
        return OnePass(dict(methods))

    def decode(self, body: bytes) -> Decoded | None:
        """The request, or None when the general path must look at it."""
        if self._decoder is None:
            return None
        try:
            env = self._decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            return None
        except Exception:  # noqa: BLE001 - a params check that raised something else (a bug):
            return None  # the general path decodes again, inside the handler's boundary
        method = self._method_of.get(type(env))
        if method is None:  # "\u0000never": _Never, a method no one serves
            return None
        return Decoded(env.jsonrpc, method, env.id, env.params)


class _Never(msgspec.Struct, tag_field="method", tag="\0never"):
    """A union member no request names (no method name holds a NUL)."""


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
