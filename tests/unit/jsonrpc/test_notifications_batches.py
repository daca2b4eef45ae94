"""The JSON-RPC dispatcher: notifications, batches, ``params: []``, and routing a subset."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.rpc.jsonrpc import Dispatcher
from tests.unit.jsonrpc.table import (
    CRASH,
    ECHO,
    WHOAMI,
    Ctx,
    call,
    notification,
    request,
)


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
