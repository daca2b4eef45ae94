"""A small method table the dispatcher tests drive, and helpers to call it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.errors import NotFound
from contracts.rpc.jsonrpc import Dispatcher, MethodSpec, NoParams, Params, Result, Router


class EchoParams(Params, kw_only=True):
    path: str
    mode: int = 0o644
    dry_run: bool = False


class Inner(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    deep_value: int


class NestedParams(Params, kw_only=True):
    inner: Inner


class EchoResult(Result, kw_only=True):
    path: str
    mode: int
    dry_run: bool
    caller_name: str


class NameResult(Result, kw_only=True):
    caller_name: str


@dataclass
class Ctx:
    name: str = "tester"
    calls: list[str] = field(default_factory=list)


async def echo(params: EchoParams, ctx: Ctx) -> EchoResult:
    ctx.calls.append(f"echo:{params.path}")
    return EchoResult(
        path=params.path, mode=params.mode, dry_run=params.dry_run, caller_name=ctx.name
    )


async def whoami(_: NoParams, ctx: Ctx) -> NameResult:
    ctx.calls.append("whoami")
    return NameResult(caller_name=ctx.name)


async def find(params: EchoParams, ctx: Ctx) -> EchoResult:
    ctx.calls.append("find")
    raise NotFound(f"no file at {params.path}")


async def crash(_: NoParams, ctx: Ctx) -> NameResult:
    ctx.calls.append("crash")
    raise RuntimeError("secret-internal-detail")


async def nested(params: NestedParams, _: Ctx) -> dict[str, int]:
    return {"deepValue": params.inner.deep_value}


ECHO = MethodSpec("files.echo", EchoParams, EchoResult, "Echo params back.")
FIND = MethodSpec("files.find", EchoParams, EchoResult, "Always not found.", (NotFound,))
WHOAMI = MethodSpec("whoami", NoParams, NameResult, "The caller's name.")
CRASH = MethodSpec("crash", NoParams, NameResult, "Always crashes.")
NESTED = MethodSpec("nested", NestedParams, dict[str, int], "Nested params.")
SPECS = (ECHO, FIND, WHOAMI, CRASH, NESTED)


def router(*, without: str = "") -> Router[Ctx]:
    r = Router[Ctx]()
    r.register(ECHO, echo)
    r.register(FIND, find)
    if without != WHOAMI.name:
        r.register(WHOAMI, whoami)
    r.register(CRASH, crash)
    r.register(NESTED, nested)
    return r


def request(method: str, params: Any = None, req_id: Any = 1) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        req["params"] = params
    return req


def notification(method: str, params: Any = None) -> dict[str, Any]:
    req = request(method, params)
    del req["id"]
    return req


async def call(dispatcher: Dispatcher[Ctx], body: Any, ctx: Ctx) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await dispatcher.handle(raw, ctx)
    assert answer is not None
    return json.loads(answer)
