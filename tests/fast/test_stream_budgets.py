"""What a command, a code run or a stream costs is the same on every route that runs one: the
plain method's per-token budget (``budget`` on its spec), spent by its streamed twin and by
the hand-written routes (``POST /rpc/stream``, codemode's SSE, MCP's tools) as by ``POST
/rpc``; a stream holds one of its token's ``FLEET_STREAMS_PER_TOKEN`` slots while it is open;
and a stream whose client stops reading is ended after ``FLEET_CLIENT_WRITE_TIMEOUT_S``, its
run cancelled, rather than held in the gateway's memory. The gateway's real HTTP app on the
fast world, on a loopback port; the exec budget over a real gateway and daemon:
tests/integration/test_stream_budgets.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from contracts.bus import subjects
from contracts.daemon import code as dc
from contracts.errors import RateLimited, TooManyStreams
from contracts.gateway import codemode as cm
from contracts.gateway.code import MACHINES_CODE_RUN
from contracts.gateway.live import MACHINES_EXEC_STREAM, RPC_STREAM_PATH, SSE_OUTPUT, SSE_RESULT
from contracts.gateway.rpc import GATEWAY_METHODS, STREAMING_METHODS
from contracts.gateway.sessions import ATTACH_PATH
from contracts.people import MACHINES_EXEC, route_scope
from contracts.rpc.jsonrpc import AnySpec
from controlplane.mcp_tools import CODE_RUN_TOOL
from fleet.client.streams import sse_events
from services.gateway.auth import Caller
from tests.fast.conftest import World
from tests.fast.test_mcp_code_run import _mcp
from tests.fast.test_rights_routes import ROUTES, served

method = pytest.mark.gateway_method
BUDGET = 2
WAIT_S = 30.0


@pytest.fixture
def settings(settings: msgspec.Struct) -> msgspec.Struct:
    return msgspec.structs.replace(settings, rate_exec_per_min=BUDGET)


def _twins(spec: AnySpec) -> list[AnySpec]:
    """The plain methods doing what ``spec`` does: those that answer its result type (a
    streamed answer ends with the very answer of the plain call)."""
    return [p for p in GATEWAY_METHODS if p is not spec and p.result is spec.result]


def test_a_streamed_or_hand_written_method_spends_the_budget_of_its_plain_twin() -> None:
    """A method whose answer streams, or whose client is written by hand, is the door a spec
    walk finds: it must not be a way around the budget its plain twin spends."""
    wrong = []
    for spec in GATEWAY_METHODS:
        if not (spec.streams or spec.hand_written):
            continue
        for twin in _twins(spec):
            if twin.budget is not None and spec.budget is None:
                wrong.append(f"{spec.name} spends no budget; its twin {twin.name}: {twin.budget}")
            elif spec.streams and twin.budget is not None and spec.budget != twin.budget:
                wrong.append(f"{spec.name} spends {spec.budget}; its twin {twin.name}: "
                             f"{twin.budget}")  # fmt: skip
        if spec.streams and not spec.reads and spec.budget is None:
            wrong.append(f"{spec.name} streams what it runs and spends no budget")
    assert not wrong, "\n".join(wrong)
    # The walk finds the twins it is about (it is not vacuous).
    assert [t.name for t in _twins(MACHINES_EXEC_STREAM)] == ["machines.exec"]


def _caller(n: int, instance_id: str) -> Caller:
    return Caller(token_id=f"t-{n:016x}", admin=False, instance_id=instance_id,
                  scopes=frozenset({MACHINES_EXEC}))  # fmt: skip


async def _rpc_stream(s: aiohttp.ClientSession, base: str, name: str,
                      params: dict[str, Any]) -> tuple[int, int | None]:  # fmt: skip
    """``name`` POSTed to /rpc/stream: the HTTP status and the error code it was answered
    with, before its stream or in its result event (None: none)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": name, "params": params}
    async with s.post(base + RPC_STREAM_PATH, json=body) as resp:
        if resp.content_type != "text/event-stream":
            return resp.status, (await resp.json())["error"]["code"]
        events = [(kind, data) async for kind, data in sse_events(resp.content)]
    assert events[-1][0] == SSE_RESULT, events
    error: dict[str, Any] | None = json.loads(events[-1][1]).get("error")
    return resp.status, None if error is None else error["code"]


async def _codemode_stream(s: aiohttp.ClientSession, base: str,
                           params: dict[str, Any]) -> tuple[int, int | None]:  # fmt: skip
    async with s.post(base + cm.RUN_STREAM_PATH, json=params) as resp:
        if resp.content_type != "text/event-stream":
            return resp.status, (await resp.json())["error"]["code"]
        events = [(kind, data) async for kind, data in sse_events(resp.content)]
    assert events[-1][0] == cm.RUN_STREAM_END, events
    error: dict[str, Any] | None = json.loads(events[-1][1]).get("error")
    return resp.status, None if error is None else error["code"]


async def _mcp_tool(base: str, token: str, tool: str, args: dict[str, Any]) -> int | None:
    async with _mcp(base, token) as client:
        answer = await client.call_tool(tool, args)
    if not answer.is_error:
        return None
    code = re.search(r"error (\d+)", json.dumps(answer.model_dump()))
    assert code is not None, answer
    return int(code.group(1))


async def _answer_codemode_runs(world: World) -> None:
    """A codemode service on the fast bus: each run answered at once, ``ok``."""
    nc = world.bus.fake_nc

    async def run(msg: Any) -> None:
        job = msgspec.json.decode(msg.data, type=cm.RunJob)
        done = cm.RunOutcome(result=cm.RunResult(run_id=job.run_id, status="ok"))
        await nc.publish(msg.reply, msgspec.json.encode(done))

    await nc.subscribe(subjects.CODEMODE_RUN, queue="codemode", cb=run)


#: One call of a route that runs something, ``send(session, base URL, token, machine id,
#: instance id)``, answering the error code it was answered with (None: none).
Send = Callable[[aiohttp.ClientSession, str, str, str, str], Awaitable[int | None]]


def _on_rpc_stream(name: str, params: Callable[[str], dict[str, Any]]) -> Send:
    async def send(s: aiohttp.ClientSession, base: str, _: str, m: str, __: str) -> int | None:
        status, code = await _rpc_stream(s, base, name, params(m))
        if code == RateLimited.code:  # refused before its stream began: a plain 429
            assert status == RateLimited.http_status
        return code

    return send


async def _run_stream(s: aiohttp.ClientSession, base: str, _: str, m: str, __: str) -> int | None:
    status, code = await _codemode_stream(s, base, {"code": "1", "machineId": m})
    if code == RateLimited.code:
        assert status == RateLimited.http_status
    return code


async def _mcp_run(_: aiohttp.ClientSession, base: str, token: str, __: str, i: str) -> int | None:
    return await _mcp_tool(base, token, "run_code", {"code": "1", "instance_id": i})


async def _mcp_code_run(_: aiohttp.ClientSession, base: str, token: str, m: str,
                        __: str) -> int | None:  # fmt: skip
    return await _mcp_tool(base, token, CODE_RUN_TOOL, {"machine_id": m, "code": "1"})


async def _mcp_computer(http: aiohttp.ClientSession, base: str, token: str, m: str,
                        __: str) -> int | None:  # fmt: skip
    start = {"jsonrpc": "2.0", "id": 1, "method": "machines.desktop.start",
             "params": {"machineId": m}}  # no budget of its own  # fmt: skip
    async with http.post(f"{base}/rpc", json=start,
                         headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
        assert "error" not in await resp.json()
    return await _mcp_tool(base, token, "computer", {"machine_id": m, "action": "mouse_move",
                                                     "coordinate": [1, 1]})  # fmt: skip


#: Every route that runs something, with the method whose work it does (and whose budget it
#: spends), and one call of it.
RUNS: dict[tuple[str, str], Send] = {
    ("POST " + RPC_STREAM_PATH, "machines.execStream"): _on_rpc_stream(
        "machines.execStream", lambda m: {"machineId": m, "command": ["true"]}),
    ("POST " + RPC_STREAM_PATH, "machines.code.run"): _on_rpc_stream(
        "machines.code.run", lambda m: {"machineId": m, "code": "1"}),
    ("POST " + cm.RUN_STREAM_PATH, cm.CODEMODE_RUN.name): _run_stream,
    ("MCP run_code", cm.CODEMODE_RUN.name): _mcp_run,
    ("MCP " + CODE_RUN_TOOL, MACHINES_CODE_RUN.name): _mcp_code_run,
    ("MCP computer", "machines.desktop.act"): _mcp_computer,
}  # fmt: skip
#: The routes into a machine or codemode that run nothing budgeted of their own: a terminal's
#: attach reaches a shell ``sessions.open`` started; MCP's describe is ``codemode.describe``,
#: which spends no budget on ``POST /rpc`` either.
RUNS_NOTHING = {"GET " + ATTACH_PATH.replace("{machineId}", "{machine_id}"), "MCP describe"}
#: The methods ``POST /rpc/stream`` serves that run nothing (``reads``, no budget): a watch
#: holds a stream slot (tests/fast/test_watch.py) and spends no budget.
STREAMS_NOTHING = {s.name for s in GATEWAY_METHODS if s.streams and s.reads and s.budget is None}


async def test_every_route_that_runs_something_is_walked(world: World) -> None:
    """Each method POST /rpc/stream serves, each route of the console that takes
    ``machines:exec`` (codemode's stream, a terminal's attach) and each MCP tool is in RUNS or
    in RUNS_NOTHING (a streamed method: in STREAMS_NOTHING, by its spec): a route added later
    is walked or said to run nothing."""
    walked = {route for route, _ in RUNS} | RUNS_NOTHING
    streamed = {name for route, name in RUNS if route.endswith(RPC_STREAM_PATH)}
    assert streamed | STREAMS_NOTHING == STREAMING_METHODS
    assert {"machines.watch"} == STREAMS_NOTHING  # the walk knows what it leaves out
    for verb, path in ROUTES:
        scope = route_scope(verb, path.replace("{machine_id}", "m-0000000000000001"))
        if scope == MACHINES_EXEC and path != cm.MCP_PATH:
            assert f"{verb} {path}" in walked, f"{verb} {path} runs something and is not walked"
    callers = {"tok": _caller(1, "i-0000000000000001")}
    async with served(world, callers) as (base, _), _mcp(base, "tok") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
    assert {f"MCP {t}" for t in tools} <= walked, tools


@method("machines.execStream", "machines.code.run", "codemode.run")
@pytest.mark.parametrize(("route", "name"), list(RUNS), ids=[" ".join(k) for k in RUNS])
async def test_a_route_that_runs_something_spends_its_methods_budget(
    world: World, route: str, name: str
) -> None:
    """Past the exec budget (``FLEET_RATE_EXEC_PER_MIN``), the next call on the route is
    refused with 1029 before anything runs, as ``POST /rpc`` refuses its plain twin."""
    spec = next(s for s in GATEWAY_METHODS if s.name == name)
    assert spec.budget == "exec"
    await _answer_codemode_runs(world)
    m = await world.ready_machine()
    callers = {"runner": _caller(1, m.instance_id)}
    send = RUNS[(route, name)]
    async with served(world, callers) as (base, _):
        headers = {"Authorization": "Bearer runner"}
        async with aiohttp.ClientSession(headers=headers) as s, asyncio.timeout(WAIT_S):
            answers = [await send(s, base, "runner", m.id, m.instance_id)
                       for _ in range(BUDGET + 1)]  # fmt: skip
    assert answers[:BUDGET] == [None] * BUDGET, answers
    assert answers[BUDGET] == RateLimited.code, answers


PARTS = [dc.CodeRunPart(seq=0, kind="stdout", text="one\n")]


async def _held_run(world: World) -> tuple[str, str, Any]:
    """A machine whose kernel, on a streamed run, sends one part and then runs until told."""
    m = await world.ready_machine()
    fake = world.daemons[m.id].code
    fake.parts, fake.publish, fake.machine_id = PARTS, world.bus.fake_nc.publish, m.id
    fake.hold = asyncio.Event()
    return m.id, m.instance_id, fake


@method("machines.execStream", "machines.code.run")
async def test_an_open_stream_holds_one_of_its_tokens_stream_slots(world: World) -> None:
    """``FLEET_STREAMS_PER_TOKEN`` bounds the streams of /rpc/stream too: past it the next is
    refused 1046 (429) before any daemon is asked; a stream that ended frees its slot."""
    world.reconfigure(streams_per_token=1)
    mid, inst, fake = await _held_run(world)
    callers = {"one": _caller(1, inst), "two": _caller(2, inst)}
    run = {"jsonrpc": "2.0", "id": 1, "method": "machines.code.run",
           "params": {"machineId": mid, "code": "1"}}  # fmt: skip
    async with served(world, callers) as (base, _), asyncio.timeout(WAIT_S):
        one = aiohttp.ClientSession(headers={"Authorization": "Bearer one"})
        two = aiohttp.ClientSession(headers={"Authorization": "Bearer two"})
        async with one, two, one.post(base + RPC_STREAM_PATH, json=run) as held:
            events = sse_events(held.content)
            assert (await anext(events))[0] == SSE_OUTPUT  # the run is under way
            for name, params in (
                ("machines.code.run", {"machineId": mid, "code": "1"}),
                ("machines.execStream", {"machineId": mid, "command": ["true"]}),
            ):
                status, code = await _rpc_stream(one, base, name, params)
                assert (status, code) == (TooManyStreams.http_status, TooManyStreams.code)
            assert len(world.daemons.calls_of(dc.CODE_RUN_STREAM.name, mid)) == 1
            async with two.post(base + RPC_STREAM_PATH, json=run) as theirs:  # its own slots
                their_events = sse_events(theirs.content)
                assert (await anext(their_events))[0] == SSE_OUTPUT
                fake.hold.set()
                assert [kind async for kind, _ in their_events] == [SSE_RESULT]
            assert [kind async for kind, _ in events] == [SSE_RESULT]
            # Its stream ended: the token has its slot back.
            assert await _rpc_stream(one, base, "machines.code.run",
                                     {"machineId": mid, "code": "3"}) == (200, None)  # fmt: skip


@method("machines.code.run")
async def test_a_stream_whose_client_stops_reading_is_ended_and_its_run_cancelled(
    world: World,
) -> None:
    """A client that opens a stream and never reads it (while the machine writes on) holds
    nothing past ``FLEET_CLIENT_WRITE_TIMEOUT_S``: a write that waited that long ends the
    stream, which cancels the run on the machine and frees the token's slot."""
    world.reconfigure(client_write_timeout_s=0.25, streams_per_token=1)
    mid, inst, fake = await _held_run(world)
    fake.parts = [dc.CodeRunPart(seq=n, kind="stdout", text="x" * (256 * 1024)) for n in range(8)]
    fake.repeat = True  # the machine writes on, without end, until its run is cancelled
    run = {"jsonrpc": "2.0", "id": 1, "method": "machines.code.run",
           "params": {"machineId": mid, "code": "1"}}  # fmt: skip
    async with (
        served(world, {"tok": _caller(1, inst)}) as (base, _),
        aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as s,
        s.post(base + RPC_STREAM_PATH, json=run) as never_read,
    ):
        assert never_read.status == 200  # and then nothing of it is read
        await asyncio.wait_for(fake.cancel_seen.wait(), WAIT_S)
        fake.parts, fake.repeat, fake.hold = [], False, None
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as again:
            answered = await asyncio.wait_for(
                _rpc_stream(again, base, "machines.code.run", {"machineId": mid, "code": "2"}),
                WAIT_S,
            )
        assert answered == (200, None)  # the ended stream's slot is free again


@method("codemode.run")
async def test_a_codemode_stream_whose_client_stops_reading_is_ended(world: World) -> None:
    """The same on codemode's run stream: a run whose events its client never reads is
    unsubscribed from (what was queued for the client let go) after the write timeout, and the
    token's stream slot is free again; the run itself goes on to its end."""
    world.reconfigure(client_write_timeout_s=0.25, streams_per_token=1)
    nc = world.bus.fake_nc
    unwatched = asyncio.Event()

    async def flood(msg: Any) -> None:
        """The first run logs without end while anyone watches its events; each answers."""
        job = msgspec.json.decode(msg.data, type=cm.RunJob)
        events = subjects.codemode_events(job.run_id)
        line = "x" * (64 * 1024)
        seq = 0
        while not unwatched.is_set() and any(s.subject == events for s in nc.subscriptions):
            seq += 1
            log = cm.RunLog(run_id=job.run_id, seq=seq, stream="stdout", line=line)
            await nc.publish(events, msgspec.json.encode(log))
            await asyncio.sleep(0)
        unwatched.set()
        done = cm.RunOutcome(result=cm.RunResult(run_id=job.run_id, status="ok"))
        await nc.publish(msg.reply, msgspec.json.encode(done))

    await nc.subscribe(subjects.CODEMODE_RUN, queue="codemode", cb=flood)
    inst = (await world.instance()).id
    run = {"code": "while True: print('x' * 65536)", "instanceId": inst}
    async with (
        served(world, {"tok": _caller(1, inst)}) as (base, _),
        aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as s,
        s.post(base + cm.RUN_STREAM_PATH, json=run) as never_read,
    ):
        assert never_read.status == 200  # and then nothing of it is read
        await asyncio.wait_for(unwatched.wait(), WAIT_S)
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as again:
            answered = await asyncio.wait_for(
                _codemode_stream(again, base, {"code": "1", "instanceId": inst}), WAIT_S
            )
        assert answered == (200, None)  # the ended stream's slot is free again
