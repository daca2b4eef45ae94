"""JSON-RPC 2.0: the envelope, typed method specs, a dispatcher and the client-side codec.

The same code serves the daemon (over NATS request/reply) and the gateway (over HTTP), so both
answer bad input the same way: -32700 for bytes that are not JSON, -32600 for an envelope that
is not a request, -32601 for an unknown method, -32602 naming the bad field, and the stable
application codes of ``contracts.errors`` for everything a handler raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar

import msgspec

from contracts.errors import (
    FleetError,
    InternalError,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    PayloadTooLarge,
    error_from_wire,
)
from contracts.people import Scope
from contracts.rpc.marks import mark, marked
from contracts.rpc.rpc_params import (
    by_name,
    invalid_params as invalid_params,  # the gateway imports it here
)


class LazyLogger:
    """structlog's logger named ``name``, imported at its first line: every `fleet` command
    that calls the API loads this module and logs only when something goes wrong, and
    structlog with what it imports was ~30 ms of each one's start-up. structlog's own loggers
    are proxies that read its configuration when they log, as this one does."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Any:
        import structlog

        return getattr(structlog.get_logger(self.name), method)


log = LazyLogger(__name__)

RequestId = int | str | None


class Params(
    msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of every method's params: camelCase on the wire, unknown fields are an error.

    A client sends only the fields it set (defaults are the server's to fill in), as the
    hand-built dicts did before the params were typed: no explicit nulls on the wire."""


class Result(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """Base of every method's result."""


class NoParams(Params, kw_only=True):
    pass


Ctx = TypeVar("Ctx")
P = TypeVar("P", bound=Params)
R = TypeVar("R")
Ps = ParamSpec("Ps")
_P_in = TypeVar("_P_in", bound=Params, contravariant=True)
_R_out = TypeVar("_R_out", covariant=True)
_Ctx_in = TypeVar("_Ctx_in", contravariant=True)


#: The per-token budgets a gateway method may spend (the gateway's ``CallLimits``), each
#: with the words its refusal names it by.
Budget = Literal["create", "exec", "build", "pause", "webhook_test"]
BUDGETS: dict[str, str] = {
    "create": "machine creations",
    "exec": "commands and code runs",
    "build": "environment builds",
    "pause": "pauses, resumes and snapshots",
    "webhook_test": "webhook tests",
}
#: Why a daemon method wakes its paused machine (the gateway's ``WakeBy``).
WakeReason = Literal["exec", "files", "terminal", "process", "tunnel"]


@dataclass(frozen=True)
class ClientMethod:
    """A gateway method's Python client method where it does not follow the rule
    (``machines.doThing`` is ``machines_do_thing(...)``, its params' required fields positional):
    ``name``; ``args``, its positional parameters in order, each a field name or
    ``python_name=field`` (the other fields are keyword-only); ``unwrap``, the result field it
    answers instead of the whole result; ``doc``, said after the spec's summary."""

    name: str
    args: str = ""
    unwrap: str | None = None
    doc: str = ""


@dataclass(frozen=True)
class MethodSpec(Generic[P, R]):
    """One method, whole: its wire name, params Struct, result type, summary and the errors it
    may answer (typed, so a handler registered for it and a client calling it are checked by
    mypy), and its policy, which every table of the platform reads from here:

    - ``scope``: what a gateway caller needs on the instance its params name (a gateway
      method without one is refused where the gateway's methods are listed, at import);
    - ``reads``: it changes nothing (the audit log records it only when refused); a method
      that mints a credential is never one (``contracts.credentials``);
    - ``public``: it answers without a token (it reveals no data);
    - ``budget``: the per-token budget each call spends (``BUDGETS``), on every route that
      runs it; a streamed twin spends its plain method's (tests/fast/test_stream_budgets.py);
    - ``wakes``: a daemon method that wakes its paused machine, and why;
    - ``at_once``: a daemon method the daemon answers on its reader, never waiting;
    - ``streams``: ``POST /rpc/stream`` streams its answer (its output as it comes);
    - ``client``: the Python client's method, where its name or positional parameters do not
      follow the rule (``codegen.pyclient``);
    - ``hand_written``: the Python client's method is written by hand (``fleet/client/calls.py``:
      a default made on the client, a longer wait, a resend, a stream), none generated;
    - ``in_code``: codemode's code may call it, as ``fleet.<method>`` (a run starting runs, or
      describing itself, is a loop, not a tool);
    - ``tool``: codemode's ``machine`` provider offers it as ``machine.<tool>``, ``machineId``
      bound to the run's machine;
    - ``passes``: a gateway method that is one daemon method on the caller's machine, its
      params mapped (``Passes``): the gateway serves it with no handler of its own."""

    name: str
    params: type[P]
    result: type[R]
    summary: str
    errors: tuple[type[FleetError], ...] = field(default=())
    scope: Scope | None = field(default=None, kw_only=True)
    reads: bool = field(default=False, kw_only=True)
    public: bool = field(default=False, kw_only=True)
    budget: Budget | None = field(default=None, kw_only=True)
    wakes: WakeReason | None = field(default=None, kw_only=True)
    at_once: bool = field(default=False, kw_only=True)
    streams: bool = field(default=False, kw_only=True)
    client: ClientMethod | None = field(default=None, kw_only=True)
    hand_written: bool = field(default=False, kw_only=True)
    in_code: bool = field(default=True, kw_only=True)
    tool: str | None = field(default=None, kw_only=True)
    passes: Passes | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.passes is not None:
            self.passes.check(self)


AnySpec = MethodSpec[Any, Any]


class Passes(Protocol):
    """What a spec's ``passes`` is (``contracts.rpc.pass_through.PassThrough``, which imports this
    module, never the other way): the daemon (or host) method it is, how its params map
    (checked against the spec when the spec is made), and how the gateway waits on it."""

    @property
    def method(self) -> AnySpec: ...

    @property
    def host(self) -> bool: ...

    @property
    def look(self) -> bool: ...

    @property
    def takes_s(self) -> float | None: ...

    def params_of(self, params: Params) -> Params: ...

    def check(self, spec: AnySpec) -> None: ...


class Request(msgspec.Struct):
    """A single request's envelope; its params stay raw until its method's type is known."""

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


class Handler(Protocol[_P_in, _R_out, _Ctx_in]):
    """What serves a ``MethodSpec[P, R]`` for callers described by ``Ctx``."""

    def __call__(self, params: _P_in, ctx: _Ctx_in, /) -> Awaitable[_R_out]: ...


_Self = TypeVar("_Self")
#: The attribute ``handles`` marks a handler with: its spec.
_HANDLES = "__fleet_handles__"


def handles(
    spec: MethodSpec[P, R],
) -> Callable[[Callable[[_Self, P, Ctx], Awaitable[R]]], Callable[[_Self, P, Ctx], Awaitable[R]]]:
    """Makes a method ``spec``'s handler, for ``Router.collect`` to register: mypy checks the
    method's params and result types against the spec's, as it does ``register``'s. An
    override of a handler that is not marked again handles nothing (``contracts.rpc.marks``)."""
    return mark(_HANDLES, spec)


@dataclass(frozen=True)
class _Route(Generic[Ctx]):
    spec: AnySpec
    handler: Handler[Any, Any, Ctx]
    decoder: msgspec.json.Decoder[Any]


class Router(Generic[Ctx]):
    """Explicit (spec, handler) pairs: ``register`` makes mypy check the handler's params and
    result types against the spec's."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route[Ctx]] = {}

    def register(self, spec: MethodSpec[P, R], handler: Handler[P, R, Ctx]) -> None:
        if spec.name in self._routes:
            raise ValueError(f"{spec.name} is registered twice")
        self._routes[spec.name] = _Route(spec, handler, msgspec.json.Decoder(spec.params))

    @staticmethod
    def handles_any(owner: object) -> bool:
        """Whether ``owner``'s class has a method marked with ``@handles``."""
        return bool(marked(type(owner), _HANDLES, MethodSpec))

    def collect(self, *owners: object) -> None:
        """Register every method of ``owners`` marked with ``@handles``, bound to its owner
        (``contracts.rpc.marks``: an override that is not marked again handles nothing)."""
        for owner in owners:
            for name, spec in marked(type(owner), _HANDLES, MethodSpec):
                self.register(spec, getattr(owner, name))

    @property
    def routes(self) -> dict[str, _Route[Ctx]]:
        return dict(self._routes)


@dataclass(frozen=True)
class Limits:
    """What one request body may cost: a 1 MB batch of cheap calls with big answers (e.g.
    ``rpc.discover``) would otherwise build a response hundreds of times its size."""

    #: Requests in one batch; a longer batch is refused whole, before any of it runs.
    max_batch: int = 100
    #: Bytes of the answer to one body. Requests whose answer no longer fits are answered with
    #: PayloadTooLarge (and those after them are not run).
    max_response_bytes: int = 8 * 1024 * 1024
    #: Requests of one batch run at once, at most (fewer when the answer budget runs low).
    batch_concurrency: int = 16


#: Turns an exception a handler did not expect into the error its caller gets (None: a bug,
#: answered -32603), e.g. the gateway's "store or bus failing over" -> Unavailable.
Translate = Callable[[Exception], FleetError | None]


class Dispatcher(Generic[Ctx]):
    """Decodes requests, validates params against the spec, calls handlers, encodes answers."""

    def __init__(
        self,
        specs: Sequence[AnySpec],
        router: Router[Ctx],
        limits: Limits | None = None,
        translate: Translate | None = None,
    ) -> None:
        self._limits = limits or Limits()
        self._translate = translate
        routes = router.routes
        missing = {s.name for s in specs} - set(routes)
        if missing:
            raise ValueError(f"no handler for {sorted(missing)}")
        extra = set(routes) - {s.name for s in specs}
        if extra:
            raise ValueError(f"handlers for methods not in the table: {sorted(extra)}")
        stale = [s.name for s in specs if routes[s.name].spec is not s]
        if stale:  # same name, another spec: its params would be decoded with the wrong type
            raise ValueError(f"handlers registered against another spec: {sorted(stale)}")
        self._routes = routes

    @property
    def methods(self) -> list[str]:
        return sorted(self._routes)

    async def handle(
        self, body: bytes, ctx: Ctx, errors: list[FleetError] | None = None
    ) -> bytes | None:
        """Answer one request body; ``None`` when nothing is owed (notifications only).
        ``errors`` receives the one error the whole body was answered with (a single request's,
        or a batch refused as a whole), for a transport that answers with the error's own status
        (the gateway's HTTP status); a batch's answers to its requests are not noted."""
        stripped = body.lstrip()
        if stripped.startswith(b"["):
            return await self._handle_batch(stripped, ctx, errors)
        return await self._handle_one(stripped, ctx, errors=errors)

    def prepare(self, body: bytes) -> Request | None:
        """A plainly valid single request's envelope, its params not yet decoded, to ``run``
        (the daemon looks at its method first); None for anything else, which ``handle``
        answers."""
        try:
            return msgspec.json.decode(body, type=Request)
        except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
            return None

    async def run(self, call: Request, ctx: Ctx) -> bytes | None:
        """``handle`` for a request ``prepare`` decoded."""
        answer = await self._answer(call, ctx)
        if answer is not None and len(answer) > self._limits.max_response_bytes:
            return _ENCODER.encode(_error(_id_of(call), self._too_large()))
        return answer

    async def _handle_batch(
        self, body: bytes, ctx: Ctx, errors: list[FleetError] | None = None
    ) -> bytes | None:
        try:
            items = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.DecodeError as exc:
            return _refuse(None, ParseError(f"parse error: {exc}"), errors)
        except RecursionError:
            return _refuse(None, _TOO_DEEP, errors)
        if not items:
            return _refuse(None, InvalidRequest("empty batch"), errors)
        limit = self._limits.max_batch
        if len(items) > limit:
            refused = InvalidRequest(
                f"a batch may hold at most {limit} requests, this one has {len(items)}",
                data={"limit": limit},
            )
            return _refuse(None, refused, errors)
        return await self._run_batch([bytes(item) for item in items], ctx)

    async def _run_batch(self, bodies: list[bytes], ctx: Ctx) -> bytes | None:
        """The answers, in order. A window runs at once (creates wait on the store and the bus,
        not on this process): the first request alone, then as many of the largest answer seen
        as the budget still fits, so a full budget stops a batch within one window."""
        answers: list[bytes] = []
        budget = self._limits.max_response_bytes - 2  # the brackets
        width, largest, start = 1, 1, 0
        while start < len(bodies):
            window = bodies[start : start + width]
            start += len(window)
            if budget > 0 and len(window) == 1:  # no task for one (a daemon's pair of writes)
                got = [await self._handle_one(window[0], ctx, budget)]
            elif budget > 0:
                got = await asyncio.gather(*(self._handle_one(b, ctx, budget) for b in window))
            else:
                got = [self._over_budget(b) for b in window]
            for body, answer in zip(window, got, strict=True):
                if answer and len(answer) > budget:  # each fit alone; together they may not
                    answer = self._over_budget(body)
                if answer:
                    answers.append(answer)
                    budget -= len(answer) + 1
                    largest = max(largest, len(answer) + 1)
            width = max(1, min(self._limits.batch_concurrency, budget // largest))
        return b"[" + b",".join(answers) + b"]" if answers else None

    def _over_budget(self, body: bytes) -> bytes | None:
        """The answer to a request not run because the batch's answer is already full."""
        try:
            env = msgspec.json.decode(body, type=Request)
        except (msgspec.DecodeError, RecursionError):
            return None  # its own parse error would not fit either
        if env.id is msgspec.UNSET:
            return None
        return _ENCODER.encode(_error(env.id, self._too_large()))

    def _too_large(self) -> PayloadTooLarge:
        limit = self._limits.max_response_bytes
        return PayloadTooLarge(
            f"the answer would exceed {limit} bytes; send fewer requests per batch",
            data={"limit": limit},
        )

    async def _handle_one(
        self,
        body: bytes,
        ctx: Ctx,
        budget: int | None = None,
        errors: list[FleetError] | None = None,
    ) -> bytes | None:
        try:
            env = msgspec.json.decode(body, type=Request)
        except msgspec.ValidationError as exc:
            return _refuse(None, InvalidRequest(f"invalid request: {exc}"), errors)
        except msgspec.DecodeError as exc:
            return _refuse(None, ParseError(f"parse error: {exc}"), errors)
        except RecursionError:  # msgspec's answer to nesting deeper than the interpreter's stack
            return _refuse(None, _TOO_DEEP, errors)
        answer = await self._answer(env, ctx, errors)
        room = self._limits.max_response_bytes if budget is None else budget
        if answer is not None and len(answer) > room:
            return _refuse(_id_of(env), self._too_large(), errors)
        return answer

    async def _answer(
        self, env: Request, ctx: Ctx, errors: list[FleetError] | None = None
    ) -> bytes | None:
        req_id = _id_of(env)
        try:
            result = await self._call(env, ctx)
            if env.id is msgspec.UNSET:
                return None
            # Encoding is inside the boundary: a result that cannot be encoded is a handler bug.
            return _ENCODER.encode(_Response(jsonrpc="2.0", id=req_id, result=result))
        except FleetError as exc:
            error = exc
        except Exception as exc:  # task boundary: one handler's crash must not take it down
            known = self._translate(exc) if self._translate else None
            if known is None:
                log.exception("rpc.handler_crashed", method=env.method, request_id=req_id)
            else:
                log.warning("rpc.handler_unavailable", method=env.method, error=repr(exc))
            error = known or InternalError(f"internal error in {env.method}")
        if env.id is msgspec.UNSET:
            return None
        return _refuse(req_id, error, errors)

    async def _call(self, env: Request, ctx: Ctx) -> Any:
        if env.jsonrpc != "2.0":
            raise InvalidRequest('invalid request: "jsonrpc" must be "2.0"')
        route = self._routes.get(env.method)
        if route is None:
            raise MethodNotFound(f"method not found: {env.method}")
        try:
            params = route.decoder.decode(by_name(env.params))
        except msgspec.ValidationError as exc:
            raise invalid_params(exc) from None
        return await route.handler(params, ctx)

    def only(self, names: frozenset[str]) -> Dispatcher[Ctx]:
        """A dispatcher that knows only these methods (any other: -32601), e.g. the ones
        anonymous callers may use: what it cannot route, it cannot run."""
        router = Router[Ctx]()
        kept = [r for n, r in self._routes.items() if n in names]
        for route in kept:
            router.register(route.spec, route.handler)
        return Dispatcher([r.spec for r in kept], router)


def _id_of(env: Request) -> RequestId:
    return None if env.id is msgspec.UNSET else env.id


def request_method(body: bytes) -> str | None:
    """The method of a single request (None for a batch or anything not a request, nested
    too deeply included)."""
    try:
        return msgspec.json.decode(body, type=Request).method
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


_TOO_DEEP = ParseError("parse error: JSON nested too deeply")


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


def new_params(make: Callable[Ps, P], /, *args: Ps.args, **kwargs: Ps.kwargs) -> P:
    """``make(*args, **kwargs)``, a params Struct built on the client side. A check in its
    ``__post_init__`` fails here as it would on the server: InvalidParams naming the field."""
    try:
        return make(*args, **kwargs)
    except ValueError as exc:
        raise invalid_params(msgspec.ValidationError(str(exc))) from None


def encode_request(method: str, params: Any, req_id: RequestId) -> bytes:
    """A request by method name; ``params`` a Struct or anything msgspec encodes (the typed
    ``encode_call`` is the one to use; this is for the raw wire, e.g. benchmarks and tests)."""
    return _ENCODER.encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})


def encode_call(spec: MethodSpec[P, Any], params: P, req_id: RequestId) -> bytes:
    """The request for ``spec`` (params encoded camelCase, defaults left out)."""
    return encode_request(spec.name, params, req_id)


def decode_result(spec: MethodSpec[Any, R], body: bytes) -> R:
    """The result of a response to ``spec``, typed as the spec says, or the error it carries."""
    return decode_response(body, spec.result)


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


def _refuse(req_id: RequestId, error: FleetError, errors: list[FleetError] | None) -> bytes:
    """The error answer, noted in ``errors`` (a transport's status) when the caller keeps it."""
    if errors is not None:
        errors.append(error)
    return _ENCODER.encode(_error(req_id, error))
