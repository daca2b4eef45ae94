"""A batch's requests run concurrently, a bounded window at a time, answered in order.

A batch of 50 ``machines.create`` run one create after the other, each waiting on its store
writes and its stored publish, would take 50 round trips end to end.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts.rpc.jsonrpc import Dispatcher, Limits, MethodSpec, NoParams, Router
from controlplane.settings import Settings, SettingsError
from tests.unit.jsonrpc.table import (
    CRASH,
    FIND,
    Ctx as BaseCtx,
    NameResult,
    crash,
    find,
    notification,
    request,
)


@dataclass
class Ctx(BaseCtx):
    running: int = 0
    most: int = 0
    arrived: int = 0
    expected: int = 0
    all_here: asyncio.Event = field(default_factory=asyncio.Event)


async def meet(_: NoParams, ctx: Ctx) -> NameResult:
    """Returns once ``ctx.expected`` calls are inside at the same time (or fails after 2 s)."""
    ctx.arrived += 1
    if ctx.arrived >= ctx.expected:
        ctx.all_here.set()
    async with asyncio.timeout(2):
        await ctx.all_here.wait()
    return NameResult(caller_name=ctx.name)


async def count(_: NoParams, ctx: Ctx) -> NameResult:
    ctx.running += 1
    ctx.most = max(ctx.most, ctx.running)
    for _turn in range(3):
        await asyncio.sleep(0)
    ctx.running -= 1
    return NameResult(caller_name=ctx.name)


async def first(_: NoParams, ctx: Ctx) -> NameResult:
    return NameResult(caller_name=ctx.name)


MEET = MethodSpec("meet", NoParams, NameResult, "Waits for the others.")
COUNT = MethodSpec("count", NoParams, NameResult, "Counts who runs at once.")
FIRST = MethodSpec("first", NoParams, NameResult, "Answers at once.")


def dispatcher(**limits: int) -> Dispatcher[Ctx]:
    r = Router[Ctx]()
    r.register(MEET, meet)
    r.register(COUNT, count)
    r.register(FIRST, first)
    r.register(CRASH, crash)
    r.register(FIND, find)
    return Dispatcher([MEET, COUNT, FIRST, CRASH, FIND], r, Limits(**limits))


async def answers(
    d: Dispatcher[Ctx], batch: list[dict[str, Any]], ctx: Ctx
) -> list[dict[str, Any]]:
    raw = await d.handle(json.dumps(batch).encode(), ctx)
    assert raw is not None
    out: list[dict[str, Any]] = json.loads(raw)
    return out


async def test_requests_of_one_batch_run_at_the_same_time() -> None:
    ctx = Ctx(expected=16)
    batch = [request(FIRST.name, req_id=0)] + [request(MEET.name, req_id=i) for i in range(1, 17)]
    got = await answers(dispatcher(), batch, ctx)
    assert [a["id"] for a in got] == list(range(17))
    assert all("result" in a for a in got), [a.get("error") for a in got]


async def test_no_more_than_the_window_run_at_once() -> None:
    ctx = Ctx()
    batch = [request(COUNT.name, req_id=i) for i in range(60)]
    got = await answers(dispatcher(batch_concurrency=4), batch, ctx)
    assert len(got) == 60
    assert ctx.most == 4


async def test_each_request_keeps_its_own_answer_and_error_in_order() -> None:
    ctx = Ctx()
    batch: list[dict[str, Any]] = []
    for i in range(0, 40, 4):
        batch += [
            request(FIRST.name, req_id=i),
            request(CRASH.name, req_id=i + 1),
            request(FIND.name, {"path": f"/p{i}"}, req_id=i + 2),
            notification(FIRST.name),
            request("no.such", req_id=i + 3),
        ]
    got = await answers(dispatcher(), batch, ctx)
    assert [a["id"] for a in got] == list(range(40))
    for i in range(0, 40, 4):
        assert "result" in got[i]
        assert got[i + 1]["error"]["code"] == -32603
        assert got[i + 2]["error"]["code"] == 1004
        assert f"/p{i}" in got[i + 2]["error"]["message"]
        assert got[i + 3]["error"]["code"] == -32601


def test_batch_concurrency_below_one_is_refused_naming_the_variable() -> None:
    assert Settings.from_env({"FLEET_RPC_BATCH_CONCURRENCY": "1"}).rpc_batch_concurrency == 1
    with pytest.raises(SettingsError, match="FLEET_RPC_BATCH_CONCURRENCY"):
        Settings.from_env({"FLEET_RPC_BATCH_CONCURRENCY": "0"})
