"""The JSON-RPC dispatcher, driven through ``handle(bytes, ctx)`` with a small method table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from contracts.errors import NotFound
from contracts.jsonrpc import Dispatcher, MethodSpec, NoParams, Params, Result, Router


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


@pytest.fixture
def dispatcher() -> Dispatcher[Ctx]:
    return Dispatcher(SPECS, router())


@pytest.fixture
def ctx() -> Ctx:
    return Ctx()


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


# --- construction -------------------------------------------------------------------------------
def test_dispatcher_refuses_a_spec_without_handler() -> None:
    with pytest.raises(ValueError, match="whoami"):
        Dispatcher(SPECS, router(without="whoami"))


def test_dispatcher_refuses_a_handler_for_a_method_not_in_the_table() -> None:
    with pytest.raises(ValueError, match="nested"):
        Dispatcher(SPECS[:-1], router())


def test_dispatcher_refuses_a_handler_registered_against_another_spec() -> None:
    r = Router[Ctx]()
    for spec in SPECS:
        r.register(spec, crash)
    lookalike = MethodSpec("whoami", NoParams, EchoResult, "Same name, other result.")
    with pytest.raises(ValueError, match="whoami"):
        Dispatcher((ECHO, FIND, lookalike, CRASH, NESTED), r)


def test_router_refuses_a_method_registered_twice() -> None:
    r = Router[Ctx]()
    r.register(WHOAMI, whoami)
    with pytest.raises(ValueError, match="twice"):
        r.register(WHOAMI, whoami)


def test_methods_lists_the_table_sorted(dispatcher: Dispatcher[Ctx]) -> None:
    assert dispatcher.methods == ["crash", "files.echo", "files.find", "nested", "whoami"]


# --- success ------------------------------------------------------------------------------------
async def test_success_returns_camel_case_result(dispatcher: Dispatcher[Ctx], ctx: Ctx) -> None:
    answer = await call(dispatcher, request("files.echo", {"path": "a.txt", "dryRun": True}), ctx)
    assert answer == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"path": "a.txt", "mode": 0o644, "dryRun": True, "callerName": "tester"},
    }


async def test_handler_receives_the_context(dispatcher: Dispatcher[Ctx]) -> None:
    answer = await call(dispatcher, request("whoami", {}), Ctx(name="alice"))
    assert answer["result"] == {"callerName": "alice"}


async def test_missing_params_mean_an_empty_object(dispatcher: Dispatcher[Ctx], ctx: Ctx) -> None:
    answer = await call(dispatcher, request("whoami"), ctx)
    assert answer["result"] == {"callerName": "tester"}


async def test_leading_whitespace_is_accepted(dispatcher: Dispatcher[Ctx], ctx: Ctx) -> None:
    body = b" \n\t" + json.dumps(request("whoami")).encode()
    answer = await call(dispatcher, body, ctx)
    assert answer["result"] == {"callerName": "tester"}


@pytest.mark.parametrize("req_id", [0, 7, -3, 2**53, "abc", "", "7", None])
async def test_request_id_is_echoed(dispatcher: Dispatcher[Ctx], ctx: Ctx, req_id: Any) -> None:
    answer = await call(dispatcher, request("whoami", req_id=req_id), ctx)
    assert answer["id"] == req_id
    assert type(answer["id"]) is type(req_id)
    assert "result" in answer


@pytest.mark.parametrize("req_id", [1.5, True, [1], {"a": 1}])
async def test_invalid_id_type_is_an_invalid_request(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, req_id: Any
) -> None:
    answer = await call(dispatcher, request("whoami", req_id=req_id), ctx)
    assert answer["error"]["code"] == -32600
    assert answer["id"] is None
    assert ctx.calls == []


# --- protocol errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"{not json", b"", b"   ", b"\xff\xfe", b'{"jsonrpc": "2.0",'])
async def test_non_json_is_a_parse_error(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, body: bytes
) -> None:
    answer = await call(dispatcher, body, ctx)
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700
    assert "result" not in answer


async def test_empty_batch_is_an_invalid_request(dispatcher: Dispatcher[Ctx], ctx: Ctx) -> None:
    answer = await call(dispatcher, b"[]", ctx)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == -32600
    assert answer["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "params": {}},
        {"jsonrpc": "2.0", "method": 5, "id": 1},
        {"method": "whoami", "id": 1},
        "whoami",
        42,
        None,
    ],
)
async def test_not_a_request_object_is_an_invalid_request(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, body: Any
) -> None:
    answer = await call(dispatcher, body, ctx)
    assert answer["error"]["code"] == -32600
    assert ctx.calls == []


@pytest.mark.parametrize("version", ["1.0", "2", "", "2.0 "])
async def test_wrong_jsonrpc_version_is_an_invalid_request(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, version: str
) -> None:
    body = {"jsonrpc": version, "method": "whoami", "id": 9}
    answer = await call(dispatcher, body, ctx)
    assert answer["error"]["code"] == -32600
    assert answer["id"] == 9
    assert ctx.calls == []


async def test_unknown_method_names_the_method(dispatcher: Dispatcher[Ctx], ctx: Ctx) -> None:
    answer = await call(dispatcher, request("files.delete", {}, req_id="r1"), ctx)
    assert answer["id"] == "r1"
    assert answer["error"]["code"] == -32601
    assert "files.delete" in answer["error"]["message"]


# --- invalid params -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "params", "path"),
    [
        ("files.echo", {"path": "a", "mode": "rw"}, "$.mode"),
        ("files.echo", {"path": 1}, "$.path"),
        ("files.echo", {}, "$.path"),
        ("files.echo", {"mode": 1}, "$.path"),
        ("files.echo", {"path": "a", "foo": 1}, "$.foo"),
        ("files.echo", {"path": "a", "dry_run": True}, "$.dry_run"),
        ("files.echo", {"path": "a", "dryRun": "yes"}, "$.dryRun"),
        ("files.echo", [1, 2], "$"),
        ("files.echo", "a", "$"),
        ("whoami", {"extra": 1}, "$.extra"),
        ("nested", {"inner": {}}, "$.inner.deepValue"),
        ("nested", {"inner": {"deepValue": "x"}}, "$.inner.deepValue"),
        ("nested", {"inner": {"deepValue": 1, "other": 2}}, "$.inner.other"),
        ("nested", {"inner": 3}, "$.inner"),
    ],
)
async def test_invalid_params_name_the_field(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, method: str, params: Any, path: str
) -> None:
    answer = await call(dispatcher, request(method, params, req_id=4), ctx)
    assert answer["id"] == 4
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"] == {"field": path}
    assert ctx.calls == []


async def test_missing_params_for_a_method_with_required_fields(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answer = await call(dispatcher, request("files.echo"), ctx)
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"] == {"field": "$.path"}


# --- handler errors -----------------------------------------------------------------------------
async def test_fleet_error_keeps_its_code_and_message(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answer = await call(dispatcher, request("files.find", {"path": "x"}, req_id=3), ctx)
    assert answer == {
        "jsonrpc": "2.0",
        "id": 3,
        "error": {"code": 1004, "message": "no file at x"},
    }


async def test_crash_is_an_internal_error_without_details(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answer = await call(dispatcher, request("crash", req_id=5), ctx)
    assert answer["id"] == 5
    assert answer["error"]["code"] == -32603
    assert "crash" in answer["error"]["message"]
    assert "secret-internal-detail" not in json.dumps(answer)


async def test_dispatcher_keeps_working_after_a_crash(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    first = await call(dispatcher, request("crash", req_id=1), ctx)
    second = await call(dispatcher, request("files.echo", {"path": "p"}, req_id=2), ctx)
    assert first["error"]["code"] == -32603
    assert second["id"] == 2
    assert second["result"]["path"] == "p"
    assert ctx.calls == ["crash", "echo:p"]


# --- notifications ------------------------------------------------------------------------------
async def test_notification_runs_the_handler_and_returns_nothing(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    body = json.dumps(notification("files.echo", {"path": "n"})).encode()
    assert await dispatcher.handle(body, ctx) is None
    assert ctx.calls == ["echo:n"]


@pytest.mark.parametrize(
    "body",
    [
        notification("files.find", {"path": "x"}),
        notification("crash"),
        notification("no.such.method"),
        notification("files.echo", {"mode": "bad"}),
        {"jsonrpc": "1.0", "method": "whoami"},
    ],
)
async def test_failing_notification_returns_nothing(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, body: dict[str, Any]
) -> None:
    assert await dispatcher.handle(json.dumps(body).encode(), ctx) is None


# --- batches ------------------------------------------------------------------------------------
async def test_batch_answers_each_request_and_skips_notifications(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    batch = [
        request("files.echo", {"path": "a"}, req_id=1),
        notification("files.echo", {"path": "b"}),
        request("files.find", {"path": "c"}, req_id="two"),
        request("nope", req_id=3),
        request("crash", req_id=None),
    ]
    answers = await call(dispatcher, batch, ctx)
    assert isinstance(answers, list)
    assert [a["id"] for a in answers] == [1, "two", 3, None]
    assert answers[0]["result"]["path"] == "a"
    assert [a.get("error", {}).get("code") for a in answers] == [None, 1004, -32601, -32603]
    assert ctx.calls == ["echo:a", "echo:b", "find", "crash"]


async def test_batch_of_only_notifications_returns_nothing(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    batch = [notification("whoami"), notification("files.echo", {"path": "x"})]
    assert await dispatcher.handle(json.dumps(batch).encode(), ctx) is None
    assert ctx.calls == ["whoami", "echo:x"]


async def test_batch_with_invalid_members_answers_each(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answers = await call(dispatcher, [1, {"foo": "bar"}, request("whoami", req_id=8)], ctx)
    assert [a["error"]["code"] for a in answers[:2]] == [-32600, -32600]
    assert answers[2] == {"jsonrpc": "2.0", "id": 8, "result": {"callerName": "tester"}}


async def test_malformed_batch_is_a_single_parse_error(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answer = await call(dispatcher, b'[{"jsonrpc": "2.0", "method": "whoami", "id": 1}', ctx)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == -32700
    assert ctx.calls == []


# --- params: [] means none ------------------------------------------------------------------------
@pytest.mark.parametrize("empty", [b"[]", b"[ ]", b" [\n] "])
async def test_an_empty_params_array_is_no_params(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, empty: bytes
) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":' + empty + b"}"
    assert (await call(dispatcher, body, ctx))["result"] == {"callerName": "tester"}


async def test_an_empty_params_array_is_an_empty_object_for_by_name_methods(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    answer = await call(dispatcher, request(ECHO.name, []), ctx)
    assert answer["error"]["code"] == -32602  # as for {}: the required field is named
    assert answer["error"]["data"]["field"] == "$.path"
    assert ctx.calls == []


@pytest.mark.parametrize("params", [["a"], [{"path": "a"}], [[]]])
async def test_params_by_position_are_refused(
    dispatcher: Dispatcher[Ctx], ctx: Ctx, params: list[Any]
) -> None:
    for spec in (ECHO, WHOAMI):
        answer = await call(dispatcher, request(spec.name, params), ctx)
        assert answer["error"]["code"] == -32602
        assert "by name" in answer["error"]["message"]
    assert ctx.calls == []


async def test_only_routes_nothing_but_the_named_methods(
    dispatcher: Dispatcher[Ctx], ctx: Ctx
) -> None:
    public = dispatcher.only(frozenset({WHOAMI.name}))
    assert public.methods == [WHOAMI.name]
    assert (await call(public, request(CRASH.name), ctx))["error"]["code"] == -32601
    batch = [request(WHOAMI.name), request(ECHO.name, {"path": "x"}, 2)]
    answers = await call(public, batch, ctx)
    assert [("result" in a, a.get("error", {}).get("code")) for a in answers] == [
        (True, None),
        (False, -32601),
    ]
    assert ctx.calls == ["whoami"]
