"""JSON-RPC 2.0: the envelope, the method table type, a dispatcher and the client-side codec.

The same code serves the daemon (over NATS request/reply) and the gateway (over HTTP), so both
answer bad input the same way: -32700 for bytes that are not JSON, -32600 for an envelope that
is not a request, -32601 for an unknown method, -32602 naming the bad field, and the stable
application codes of ``contracts.errors`` for everything a handler raises.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import structlog

from contracts.errors import (
    FleetError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    error_from_wire,
)

log = structlog.get_logger(__name__)

Ctx = TypeVar("Ctx")
R = TypeVar("R")
RequestId = int | str | None


class Params(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Base of every method's params: camelCase on the wire, unknown fields are an error."""


class Result(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """Base of every method's result."""


class NoParams(Params, kw_only=True):
    pass


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: type[Params]
    result: Any
    summary: str
    errors: tuple[type[FleetError], ...] = field(default=())


class _Envelope(msgspec.Struct):
    jsonrpc: str
    method: str
    params: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    id: int | str | msgspec.UnsetType | None = msgspec.UNSET


class _Response(msgspec.Struct, omit_defaults=True):
    jsonrpc: str
    id: RequestId
    result: Any = msgspec.UNSET
    error: Any = msgspec.UNSET


_ENCODER = msgspec.json.Encoder()
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


Handler = Callable[[Any, Ctx], Awaitable[Any]]


class Dispatcher(Generic[Ctx]):
    """Decodes requests, validates params against the spec, calls handlers, encodes answers."""

    def __init__(self, specs: Sequence[MethodSpec], handlers: Mapping[str, Handler[Ctx]]) -> None:
        missing = {s.name for s in specs} - set(handlers)
        if missing:
            raise ValueError(f"no handler for {sorted(missing)}")
        self._routes = {s.name: (s, handlers[s.name]) for s in specs}
        self._decoders = {s.name: msgspec.json.Decoder(s.params) for s in specs}

    @property
    def methods(self) -> list[str]:
        return sorted(self._routes)

    async def handle(self, body: bytes, ctx: Ctx) -> bytes | None:
        """Answer one request body; ``None`` when nothing is owed (notifications only)."""
        stripped = body.lstrip()
        if stripped.startswith(b"["):
            return await self._handle_batch(stripped, ctx)
        return await self._handle_one(stripped, ctx)

    async def _handle_batch(self, body: bytes, ctx: Ctx) -> bytes | None:
        try:
            items = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            return _ENCODER.encode(_error(None, ParseError(f"parse error: {exc}")))
        if not items:
            return _ENCODER.encode(_error(None, InvalidRequest("empty batch")))
        answers = [a for a in [await self._handle_one(bytes(i), ctx) for i in items] if a]
        return b"[" + b",".join(answers) + b"]" if answers else None

    async def _handle_one(self, body: bytes, ctx: Ctx) -> bytes | None:
        try:
            env = msgspec.json.decode(body, type=_Envelope)
        except msgspec.ValidationError as exc:
            return _ENCODER.encode(_error(None, InvalidRequest(f"invalid request: {exc}")))
        except msgspec.DecodeError as exc:
            return _ENCODER.encode(_error(None, ParseError(f"parse error: {exc}")))
        req_id = None if env.id is msgspec.UNSET else env.id
        try:
            result = await self._call(env, ctx)
            if env.id is msgspec.UNSET:
                return None
            # Encoding is inside the boundary: a result that cannot be encoded is a handler bug.
            return _ENCODER.encode(_Response(jsonrpc="2.0", id=req_id, result=result))
        except FleetError as exc:
            answer = _error(req_id, exc)
        except Exception:  # task boundary: one handler's crash must not take the server down
            log.exception("rpc.handler_crashed", method=env.method, request_id=req_id)
            answer = _error(req_id, InternalError(f"internal error in {env.method}"))
        return None if env.id is msgspec.UNSET else _ENCODER.encode(answer)

    async def _call(self, env: _Envelope, ctx: Ctx) -> Any:
        if env.jsonrpc != "2.0":
            raise InvalidRequest('invalid request: "jsonrpc" must be "2.0"')
        route = self._routes.get(env.method)
        if route is None:
            raise MethodNotFound(f"method not found: {env.method}")
        try:
            params = self._decoders[env.method].decode(env.params)
        except msgspec.ValidationError as exc:
            raise invalid_params(exc) from None
        return await route[1](params, ctx)


def encode_error(exc: FleetError, req_id: RequestId = None) -> bytes:
    """A JSON-RPC error response (for answers given before a request is even parsed)."""
    return _ENCODER.encode(_error(req_id, exc))


def _error(req_id: RequestId, exc: FleetError) -> _Response:
    return _Response(jsonrpc="2.0", id=req_id, error=exc.to_wire())


# --- client side ------------------------------------------------------------------------------
class _ClientResponse(msgspec.Struct):
    jsonrpc: str = "2.0"
    id: RequestId = None
    #: Empty when the response has no "result" member (a null result is b"null").
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    error: dict[str, Any] | None = None


def encode_request(method: str, params: Any, req_id: RequestId) -> bytes:
    return _ENCODER.encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})


def decode_response(body: bytes, result_type: type[R]) -> R:
    """The typed result of a JSON-RPC response, or the FleetError it carries."""
    try:
        resp = msgspec.json.decode(body, type=_ClientResponse)
    except msgspec.DecodeError as exc:
        raise ParseError(f"malformed JSON-RPC response: {exc}") from None
    if resp.error is not None:
        raise error_from_wire(resp.error)
    if not resp.result:
        raise InvalidRequest("JSON-RPC response has neither result nor error")
    try:
        return msgspec.json.decode(resp.result, type=result_type)
    except msgspec.ValidationError as exc:
        raise InternalError(f"unexpected result shape: {exc}") from None
