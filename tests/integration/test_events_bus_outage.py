"""GET /events while the gateway loses its event bus mid-stream (nats-server stopped under it):
the stream ends with `event: error` carrying 1501 (not silence: the live subscription may miss
what is published meanwhile), a stream opened meanwhile is refused 503 + Retry-After, and
FleetClient.events resumes after the last event it read once the bus is back, missing and
repeating nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp
import pytest

from contracts.bus.events import Event, MachineReady
from contracts.errors import Unavailable
from contracts.gateway import sse
from contracts.ids import new_event_id, new_machine_id
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up import NatsServer
from tests.conftest import ADMIN_TOKEN
from tests.waiters import wait_until

#: The gateway checks its bus every 0.5 s, so a stream ends about then; this bound is loose for
#: a loaded CI host (a stream that never ends, the old behaviour, still fails it).
PROMPT_S = 12.0


@pytest.fixture
def nats_server(own_nats_server: NatsServer) -> NatsServer:
    """Of the test's own: these tests stop it under open event streams and start it again."""
    return own_nats_server


async def messages(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str, str]]:
    """(event name, id, data) of each SSE message."""
    kind, seq, data = "message", "", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield kind, seq, data
            kind, data = "message", ""
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("id: "):
            seq = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")


def ready(machine_id: str) -> MachineReady:
    # No stage consumes machine.ready: the stack leaves these events alone.
    return MachineReady(event_id=new_event_id(), machine_id=machine_id)


@pytest.mark.timeout(120)
async def test_a_stream_ends_with_1501_when_the_bus_goes_and_reopens_after(
    stack: FleetClient, settings: Settings, bus: Bus, nats_server: NatsServer
) -> None:
    mid = new_machine_id()
    first = ready(mid)
    await bus.publish(first)
    url = f"http://127.0.0.1:{settings.port}/events"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(url, params={"machineId": mid}) as resp:
            got = aiter(messages(resp))
            kind, last_id, data = await anext(got)
            assert (kind, json.loads(data)["eventId"]) == ("message", first.event_id)
            assert (await anext(got))[0] == sse.CAUGHT_UP
            nats_server.stop()
            async with asyncio.timeout(PROMPT_S):  # before: a quiet stream, then keepalives
                kind, _, data = await anext(got)
            assert kind == sse.ERROR
            error = json.loads(data)
            assert error["code"] == Unavailable.code
            assert error["data"]["retryAfterMs"] > 0
            with pytest.raises(StopAsyncIteration):  # and the stream ends
                await anext(got)

        async with s.get(url, params={"machineId": mid, "since": last_id}) as resp:
            assert resp.status == 503  # before: a stream that would never carry anything
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == Unavailable.code

        await asyncio.to_thread(nats_server.start)
        second = ready(mid)

        async def reopened() -> bool:
            async with s.get(url, params={"machineId": mid, "since": last_id}) as resp:
                return resp.status == 200

        await wait_until(reopened, timeout=30)
        async with s.get(url, params={"machineId": mid, "since": last_id}) as resp:
            got = aiter(messages(resp))
            assert (await anext(got))[0] == sse.CAUGHT_UP
            await bus.publish(second)  # live, after the gateway's bus came back
            async with asyncio.timeout(30):
                kind, _, data = await anext(got)
            assert (kind, json.loads(data)["eventId"]) == ("message", second.event_id)


@pytest.mark.timeout(120)
async def test_the_client_resumes_a_stream_ended_by_1501_after_the_last_event(
    stack: FleetClient, settings: Settings, bus: Bus, nats_server: NatsServer
) -> None:
    mid = new_machine_id()
    events = [ready(mid) for _ in range(2)]
    seen: list[Event] = []

    async def follow() -> None:
        async with aclosing(stack.events(mid)) as stream:
            async for _, event in stream:
                seen.append(event)
                if len(seen) == len(events):
                    return

    await bus.publish(events[0])
    following = asyncio.create_task(follow())
    try:
        await wait_until(lambda: len(seen) == 1, timeout=30)
        nats_server.stop()
        # The positive signal that the stream ended with 1501 and the client is waiting to
        # resume (before: the stream stayed open, silent).
        await wait_until(lambda: stack.unavailable_retries >= 1, timeout=PROMPT_S * 2)
        assert not following.done()
        await asyncio.to_thread(nats_server.start)
        await bus.publish(events[1])
        await asyncio.wait_for(following, 60)
    finally:
        following.cancel()
    assert [e.event_id for e in seen] == [e.event_id for e in events]
