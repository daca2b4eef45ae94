"""``machines.code.run`` over ``POST /rpc/stream``, in memory (the gateway's HTTP app on the
fast world, its fake daemon publishing on a fake NATS): one ``output`` event per part the daemon
publishes, in its order, then one ``result`` event with the answer the plain call gives; the
request validated and its caller checked before any daemon is asked. The kernels' own stream on
a real machine: tests/integration/test_code_interpreter.py."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgspec
import pytest

from contracts.daemon import code as dc
from contracts.errors import Forbidden, InvalidParams, MethodNotFound
from contracts.gateway.live import RPC_STREAM_PATH, SSE_DROPPED, SSE_OUTPUT, SSE_RESULT
from fleet.client import FleetClient
from fleet.client.streams import sse_events
from services.gateway.streams.exec_stream import MAX_HELD_BYTES
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of, two_instances
from tests.fast.test_rights_routes import served

RUN = "machines.code.run"
method = pytest.mark.gateway_method
PARTS = [
    dc.CodeRunPart(seq=0, kind="stdout", text="one\n"),
    dc.CodeRunPart(seq=1, kind="result", result={"text/html": "<b>2</b>", dc.IS_MAIN: False}),
    dc.CodeRunPart(seq=2, kind="stderr", text="three\n"),
    dc.CodeRunPart(seq=3, kind="error", error=dc.CodeError(name="E", value="4", traceback=[])),
]


async def _streaming_machine(world: World) -> tuple[str, str, str]:
    """A machine of instance ``a`` whose daemon publishes PARTS before each streamed answer."""
    a, b = await two_instances(world)
    mid = (await world.ready_machine(a)).id
    fake = world.daemons[mid].code
    fake.parts, fake.publish, fake.machine_id = PARTS, world.bus.fake_nc.publish, mid
    return mid, a, b


@method(RUN)
async def test_a_streamed_run_sends_each_part_in_order_then_the_plain_answer(
    world: World,
) -> None:
    mid, a, _ = await _streaming_machine(world)
    body = {"jsonrpc": "2.0", "id": 1, "method": RUN,
            "params": {"machineId": mid, "code": "x + 1", "timeoutS": 30}}  # fmt: skip
    async with served(world, {"tok-a": token_of(a)}) as (base, _), aiohttp.ClientSession() as s:
        headers = {"Authorization": "Bearer tok-a"}
        async with s.post(base + RPC_STREAM_PATH, json=body, headers=headers) as resp:
            assert resp.content_type == "text/event-stream"
            events = [(kind, json.loads(data)) async for kind, data in sse_events(resp.content)]
        async with FleetClient(base, "tok-a") as fleet:
            items = [i async for i in fleet.machines_code_run_stream(mid, "x + 1", timeout_s=30)]
            plain = await fleet.machines_code_run(mid, "x + 1", timeout_s=30)
    assert [kind for kind, _ in events] == [SSE_OUTPUT] * len(PARTS) + [SSE_RESULT]
    assert [data for _, data in events[:-1]] == [msgspec.to_builtins(p) for p in PARTS]
    answer = events[-1][1]["result"]
    assert answer["results"] == [{"text/plain": "x + 1", "isMain": True}]
    # The client yields the parts typed, then the answer, which is the plain call's.
    assert items[:-1] == PARTS
    # (the fake counts its runs, as a kernel counts its executions)
    assert msgspec.structs.replace(items[-1], execution_count=plain.execution_count) == plain
    streamed = world.daemons.calls_of(dc.CODE_RUN_STREAM.name, mid)
    assert len(streamed) == 2
    assert all(c.timeout_s is not None and c.timeout_s >= 30 + dc.KERNEL_START_S
               for c in streamed)  # fmt: skip
    assert len(world.daemons.calls_of(dc.CODE_RUN.name, mid)) == 1  # the plain one


@method(RUN)
async def test_a_streamed_run_is_validated_and_checked_before_any_daemon_is_asked(
    world: World,
) -> None:
    mid, a, b = await _streaming_machine(world)
    callers = {"tok-a": token_of(a), "tok-b": token_of(b)}
    async with served(world, callers) as (base, _):
        async with FleetClient(base, "tok-a") as fleet:
            with pytest.raises(InvalidParams):  # past the longest timeout
                await anext(fleet.machines_code_run_stream(mid, "1", timeout_s=1e9))
            # The stream's id is the gateway's to choose: a caller cannot name another's.
            raw = {"jsonrpc": "2.0", "id": 1, "method": RUN, "params": {
                "machineId": mid, "code": "1", "streamId": "0" * 32}}  # fmt: skip
            async with fleet.session.post(base + RPC_STREAM_PATH, json=raw) as resp:
                ((kind, data),) = [e async for e in sse_events(resp.content)]
            assert kind == SSE_RESULT
            assert json.loads(data)["error"]["code"] == InvalidParams.code
        async with FleetClient(base, "tok-b") as other:
            with pytest.raises(Forbidden):  # another instance's machine
                await anext(other.machines_code_run_stream(mid, "1"))
    assert world.daemons.calls_of(dc.CODE_RUN_STREAM.name, mid) == []


@method(RUN)
async def test_a_machine_flooding_a_stream_faster_than_its_client_reads_is_held_within_a_bound(
    world: World,
) -> None:
    """A machine's daemon is not trusted: one that publishes without end on an open stream
    (its own stream's subject) while the client has not read, is held for that client up to
    the stream's bound, not in the gateway's memory without one; what was left out is said,
    and the answer still comes."""
    mid, a, _ = await _streaming_machine(world)
    chunk = "x" * (512 * 1024)
    flood = [dc.CodeRunPart(seq=n, kind="stdout", text=chunk) for n in range(48)]  # 24 MiB
    world.daemons[mid].code.parts = flood
    body = {"jsonrpc": "2.0", "id": 1, "method": RUN, "params": {"machineId": mid, "code": "1"}}
    async with served(world, {"tok-a": token_of(a)}) as (base, _), aiohttp.ClientSession() as s:
        headers = {"Authorization": "Bearer tok-a"}
        async with s.post(base + RPC_STREAM_PATH, json=body, headers=headers) as resp:
            events = [(kind, data) async for kind, data in sse_events(resp.content)]
    output = [data for kind, data in events if kind == SSE_OUTPUT]
    assert sum(map(len, output)) <= MAX_HELD_BYTES
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == [SSE_DROPPED, SSE_RESULT]
    assert json.loads(events[-2][1]) == {"parts": len(flood) - len(output)}
    assert json.loads(events[-1][1])["result"]["results"] == [{"text/plain": "1", "isMain": True}]


@method(RUN)
async def test_an_answer_past_a_default_line_limit_reaches_the_client(world: World) -> None:
    """A result event is one line holding a whole answer (its images): the client reads
    lines as long as a NATS message may be, not aiohttp's default of 512 KiB."""
    mid, a, _ = await _streaming_machine(world)
    world.daemons[mid].code.parts = []
    code = "7" * 900_000  # the fake answers its code back as the result
    async with served(world, {"tok-a": token_of(a)}) as (base, _), FleetClient(base, "tok-a") as f:
        (answer,) = [i async for i in f.machines_code_run_stream(mid, code)]
    assert isinstance(answer, dc.CodeRunResult)
    assert answer.results == [{"text/plain": code, "isMain": True}]


@method(RUN)
async def test_a_client_that_leaves_its_stream_ends_the_run_on_the_machine(world: World) -> None:
    """As a streamed command is killed when its client goes, a streamed run is cancelled
    (``tool.code.cancelRun``: the daemon interrupts it): no kernel spins on for nobody."""
    mid, a, _ = await _streaming_machine(world)
    fake = world.daemons[mid].code
    fake.parts, fake.hold = PARTS[:1], asyncio.Event()
    async with served(world, {"tok-a": token_of(a)}) as (base, _), FleetClient(base, "tok-a") as f:
        stream = f.machines_code_run_stream(mid, "while True: pass")
        assert await anext(stream) == PARTS[0]
        await stream.aclose()  # the client leaves while the code runs
        await asyncio.wait_for(fake.cancel_seen.wait(), 30)
    (run,) = world.daemons.calls_of(dc.CODE_RUN_STREAM.name, mid)
    assert isinstance(run.params, dc.CodeRunStreamParams)
    assert fake.cancelled == [run.params.stream_id]


async def test_a_method_whose_spec_does_not_stream_is_refused_on_the_stream_path(
    world: World,
) -> None:
    """``streams`` on a spec is what ``POST /rpc/stream`` serves: another method is refused
    there, naming those that stream, and never run."""
    mid, a, _ = await _streaming_machine(world)
    body = {"jsonrpc": "2.0", "id": 1, "method": "machines.process.list",
            "params": {"machineId": mid}}  # fmt: skip
    async with served(world, {"tok-a": token_of(a)}) as (base, _), aiohttp.ClientSession() as s:
        headers = {"Authorization": "Bearer tok-a"}
        async with s.post(base + RPC_STREAM_PATH, json=body, headers=headers) as resp:
            status, answer = resp.status, await resp.json()
    assert status == MethodNotFound.http_status
    assert answer["error"]["code"] == MethodNotFound.code
    assert "machines.code.run, machines.execStream" in answer["error"]["message"]
    assert world.daemons.calls_of("process.list", mid) == []
