"""``machines.watch`` over ``POST /rpc/stream``, in memory: the gateway's HTTP app on the fast
world, the machine's side a real ``ByteStream`` on the fake NATS (tests/fakes/watches.py). A
watch's events reach its client in order and its end says why; it holds exactly one of its
token's stream slots; a machine that sends what is not an event gets its watch cut, and none of
it reaches the client; a slow client is told how many events it missed as it goes; a plain
``POST /rpc`` call is refused with a hint. On real daemons of each runtime:
tests/integration/test_watch*.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec
import pytest
from structlog.testing import capture_logs

from contracts.daemon.watch import FileEvent, WatchEnd
from contracts.errors import InvalidRequest, TooManyStreams
from contracts.gateway.live import RPC_STREAM_PATH, SSE_DROPPED, SSE_OUTPUT, SSE_RESULT
from contracts.status import MachineStatus as S
from fleet.client import FleetClient
from fleet.client.streams import sse_events
from services.gateway.auth import Caller
from tests.fakes.watches import FakeWatches
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of
from tests.fast.test_rights_routes import served
from tests.waiters import wait_until
from tests.watch_checks import traced_streams, unread_stream

method = pytest.mark.gateway_method("machines.watch")
WAIT_S = 30.0


async def _watched(world: World) -> tuple[str, str, FakeWatches]:
    m = await world.ready_machine()
    fake = world.daemons[m.id].watches
    fake.nc = world.bus.fake_nc
    return m.id, m.instance_id, fake


def _line(kind: str, path: str) -> bytes:
    return msgspec.json.encode(FileEvent(type=kind, path=path)) + b"\n"  # type: ignore[arg-type]


@asynccontextmanager
async def _watch(base: str, token: str, mid: str) -> AsyncIterator[aiohttp.ClientResponse]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "machines.watch",
            "params": {"machineId": mid, "path": "src"}}  # fmt: skip
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s, \
            s.post(base + RPC_STREAM_PATH, json=body) as resp:  # fmt: skip
        yield resp


@asynccontextmanager
async def _served_watch(
    world: World, inst: str, mid: str
) -> AsyncIterator[tuple[str, aiohttp.ClientResponse]]:
    """The gateway served (its URL), and a watch of ``src`` posted to it by a caller of
    ``inst``."""
    async with served(world, {"tok": token_of(inst)}) as (base, _), _watch(base, "tok", mid) as r:
        yield base, r


async def _events(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    return [(kind, json.loads(data)) async for kind, data in sse_events(resp.content)]


@method
async def test_a_watchs_events_reach_its_client_in_order_and_its_end_says_why(
    world: World,
) -> None:
    mid, inst, fake = await _watched(world)
    async with _served_watch(world, inst, mid) as (base, resp):
        await asyncio.wait_for(fake.opened.wait(), WAIT_S)
        [stream] = fake.streams
        await stream.send(_line("create", "/h/src/a") + _line("write", "/h/src/a"))
        await stream.send(_line("rename", "/h/src/a"))
        await stream.end(int(WatchEnd.REMOVED))
        events = await asyncio.wait_for(_events(resp), WAIT_S)
        assert fake.params[0].path == "src"
        async with FleetClient(base, "tok") as fleet:  # the client's typed iterator
            fake.opened.clear()
            items = fleet.machines_watch(mid, "src")
            first = asyncio.create_task(anext(items))
            await asyncio.wait_for(fake.opened.wait(), WAIT_S)
            await fake.streams[1].send(_line("chmod", "/h/src/b"))
            assert await asyncio.wait_for(first, WAIT_S) == FileEvent(type="chmod", path="/h/src/b")
            await fake.streams[1].end(int(WatchEnd.STOPPING))
            end = await asyncio.wait_for(anext(items), WAIT_S)
    assert [kind for kind, _ in events] == [SSE_OUTPUT] * 3 + [SSE_RESULT]
    assert [(e["type"], e["path"]) for _, e in events[:3]] == [
        ("create", "/h/src/a"), ("write", "/h/src/a"), ("rename", "/h/src/a")]  # fmt: skip
    result = events[-1][1]["result"]
    assert (result["reason"], result["events"]) == ("removed", 3)
    assert result["path"].endswith("/src")
    assert (end.reason, end.events) == ("restarted", 1)  # type: ignore[union-attr]


@method
async def test_a_watch_of_a_machine_that_pauses_ends_with_that_reason(world: World) -> None:
    mid, inst, fake = await _watched(world)
    async with _served_watch(world, inst, mid) as (_, resp):
        await asyncio.wait_for(fake.opened.wait(), WAIT_S)
        await world.store.transition(mid, S.PAUSING, "pausing by request")
        await fake.streams[0].end(int(WatchEnd.PAUSED))
        events = await asyncio.wait_for(_events(resp), WAIT_S)
    assert events[-1][1]["result"]["reason"] == "paused"


@method
async def test_a_watch_holds_one_of_its_tokens_stream_slots(world: World) -> None:
    """``FLEET_STREAMS_PER_TOKEN`` counts a watch once (its stream to the machine is the slot
    ``POST /rpc/stream`` took): with one slot, a watch opens, a second is refused 1046 (429)
    while it is open, and the slot is free again once it ended."""
    world.reconfigure(streams_per_token=1)
    mid, inst, fake = await _watched(world)
    async with served(world, {"tok": token_of(inst)}) as (base, _):
        async with _watch(base, "tok", mid) as held:
            assert held.content_type == "text/event-stream"
            await asyncio.wait_for(fake.opened.wait(), WAIT_S)
            async with _watch(base, "tok", mid) as refused:
                assert refused.status == TooManyStreams.http_status
                assert (await refused.json())["error"]["code"] == TooManyStreams.code
            await fake.streams[0].end(int(WatchEnd.REMOVED))
            await asyncio.wait_for(_events(held), WAIT_S)
        fake.opened.clear()
        async with _watch(base, "tok", mid) as again:
            await asyncio.wait_for(fake.opened.wait(), WAIT_S)
            await fake.streams[1].end(int(WatchEnd.REMOVED))
            assert (await asyncio.wait_for(_events(again), WAIT_S))[-1][0] == SSE_RESULT


@method
async def test_a_machine_that_sends_what_is_not_an_event_gets_its_watch_cut(
    world: World,
) -> None:
    mid, inst, fake = await _watched(world)
    async with _served_watch(world, inst, mid) as (_, resp):
        await asyncio.wait_for(fake.opened.wait(), WAIT_S)
        await fake.streams[0].send(_line("create", "/h/src/ok") + b'{"type": "boom"}\n')
        events = await asyncio.wait_for(_events(resp), WAIT_S)
    assert [e["path"] for kind, e in events if kind == SSE_OUTPUT] == ["/h/src/ok"]
    result = events[-1][1]["result"]
    assert result["reason"] == "cut", result
    assert "not one" in result["message"], result
    assert fake.streams[0].error is not None  # the machine's side was aborted


@method
async def test_a_slow_client_is_told_what_it_missed_as_it_goes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past what the gateway holds for a client that does not read, events are left out and
    the client is told the count so far before the next event it gets, not only at the end."""
    monkeypatch.setattr("services.gateway.streams.exec_stream.MAX_HELD_BYTES", 4096)
    mid, inst, fake = await _watched(world)
    async with _served_watch(world, inst, mid) as (_, resp):
        await asyncio.wait_for(fake.opened.wait(), WAIT_S)
        burst = b"".join(_line("write", f"/h/src/{n:04d}") for n in range(400))
        await fake.streams[0].send(burst)  # queued faster than the pump can write
        await fake.streams[0].send(_line("create", "/h/src/late"))
        await fake.streams[0].end(int(WatchEnd.REMOVED))
        events = await asyncio.wait_for(_events(resp), WAIT_S)
    kinds = [kind for kind, _ in events]
    told = [e["parts"] for kind, e in events if kind == SSE_DROPPED]
    outputs = kinds.count(SSE_OUTPUT)
    assert told, kinds
    assert told[-1] == 401 - outputs, (told, outputs)
    assert kinds.index(SSE_DROPPED) < len(kinds) - 2  # said before the end, as it happened


@method
async def test_a_client_that_reads_nothing_holds_at_most_the_bound_however_small_the_events(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine sends many tiny events to a client that reads none of them: what the gateway
    holds for that client (each event's bytes and what holding one costs: its object, its place
    in the queue), as tracemalloc traces it, stays within the stream's bound. The client, when
    it reads at last, is told that events were left out: the bound was reached."""
    limit = 64 * 1024
    monkeypatch.setattr("services.gateway.streams.exec_stream.MAX_HELD_BYTES", limit)
    mid, inst, fake = await _watched(world)
    tiny = _line("chmod", "/h/a")
    params = {"machineId": mid, "path": "src"}
    async with served(world, {"tok": token_of(inst)}) as (base, _), \
            unread_stream(base, "tok", "machines.watch", params) as client:  # fmt: skip
        await asyncio.wait_for(fake.opened.wait(), WAIT_S)
        with traced_streams() as held, capture_logs() as logs:
            await fake.streams[0].send(tiny * (4 * limit // len(tiny)))
            await fake.streams[0].end(int(WatchEnd.REMOVED))
            await wait_until(lambda: any(e["event"] == "watch.ended" for e in logs), WAIT_S)
            holds = held()
        answer = await client.read_all()
    assert b"event: " + SSE_DROPPED.encode() in answer
    assert holds <= limit, f"{holds} bytes held for a bound of {limit}"


@method
async def test_a_plain_call_is_refused_with_where_to_post_it(world: World) -> None:
    mid, inst, _ = await _watched(world)
    with pytest.raises(InvalidRequest, match="/rpc/stream"):
        await world.rpc("machines.watch", {"machineId": mid, "path": "src"}, token_of(inst))
    other = Caller(token_id="t-00000000000000bb", admin=False, instance_id="i-00000000000000bb")
    with pytest.raises(Exception, match="may not"):  # another instance's: refused for rights
        await world.rpc("machines.watch", {"machineId": mid, "path": "src"}, other)
