"""The JSON-RPC dispatcher, driven through ``handle(bytes, ctx)`` with a small method table:
construction, success, protocol errors, invalid params, handler errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.rpc.jsonrpc import Dispatcher, MethodSpec, NoParams, Router
from tests.unit.jsonrpc.table import (
    CRASH,
    ECHO,
    FIND,
    NESTED,
    SPECS,
    WHOAMI,
    Ctx,
    EchoResult,
    call,
    crash,
    request,
    router,
    whoami,
)


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
