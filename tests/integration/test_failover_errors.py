"""The gateway while its state store is gone (valkey stopped, as between a primary's death and
the sentinels' promotion of a replica): calls are answered 1501 Unavailable with HTTP 503 and
Retry-After, never -32603; the client retries them, and once valkey is back they succeed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from typing import Any

import aiohttp
import pytest

from contracts.errors import Unavailable
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up import ValkeyServer
from tests.conftest import ADMIN_TOKEN
from tests.waiters import wait_until

LIST = {"jsonrpc": "2.0", "id": 1, "method": "instances.list", "params": {}}


@pytest.fixture
def redis_server(own_redis_server: ValkeyServer) -> ValkeyServer:
    """Of the test's own: these tests stop it (or pause it) under the gateway and start it again."""
    return own_redis_server


async def post(
    settings: Settings, body: dict[str, Any], token: str = ADMIN_TOKEN
) -> tuple[int, dict[str, str], Any]:
    url = f"http://127.0.0.1:{settings.port}/rpc"
    data = io.BytesIO(json.dumps(body).encode())
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        return r.status, dict(r.headers), json.loads(await r.text())


def restart(server: ValkeyServer) -> None:
    """The same port and data dir (its append-only file): what `fleet up` does, and what a
    client sees when the sentinels name a new primary."""
    server.start()


@pytest.mark.timeout(120)
async def test_a_stopped_store_is_answered_unavailable_then_the_call_succeeds(
    stack: FleetClient, settings: Settings, redis_server: ValkeyServer
) -> None:
    inst = await stack.create_instance("before")
    redis_server.stop()

    status, headers, answer = await post(settings, LIST)
    assert answer["error"]["code"] == Unavailable.code, answer  # before: -32603
    assert answer["error"]["data"]["retryAfterMs"] > 0
    assert status == 503
    assert int(headers["Retry-After"]) >= 1

    # A batch keeps HTTP 200 (its answers may differ), each answer Unavailable.
    status, _, batch = await post(settings, [LIST, {**LIST, "id": 2}])  # type: ignore[arg-type]
    assert status == 200
    assert [a["error"]["code"] for a in batch] == [Unavailable.code] * 2

    restart(redis_server)
    status, _, answer = await post(settings, LIST)
    assert status == 200
    assert [i["id"] for i in answer["result"]["instances"]] == [inst.id]


@pytest.mark.timeout(120)
async def test_an_instance_token_is_not_refused_while_the_store_is_gone(
    stack: FleetClient, settings: Settings, redis_server: ValkeyServer
) -> None:
    """Looking the token up fails: that is Unavailable (503), not a crash (500) nor a 401
    that would tell the client to drop a good token."""
    inst = await stack.create_instance("tok")
    token = (await stack.create_token("t", inst.id)).token
    redis_server.stop()
    status, headers, answer = await post(settings, LIST, token)
    assert (status, answer["error"]["code"]) == (503, Unavailable.code), answer
    assert "Retry-After" in headers
    restart(redis_server)
    status, _, answer = await post(settings, LIST, token)
    assert status == 200, answer


@pytest.mark.timeout(120)
async def test_the_client_retries_until_the_store_is_back(
    stack: FleetClient, settings: Settings, redis_server: ValkeyServer
) -> None:
    inst = await stack.create_instance("retried")
    redis_server.stop()
    listing = asyncio.create_task(stack.list_instances())
    await wait_until(lambda: stack.unavailable_retries >= 1, timeout=60)
    assert not listing.done()
    restart(redis_server)
    assert [i.id for i in await asyncio.wait_for(listing, 60)] == [inst.id]


@pytest.mark.timeout(120)
async def test_the_client_gives_up_after_its_tries(
    stack: FleetClient, settings: Settings, redis_server: ValkeyServer
) -> None:
    redis_server.stop()
    async with FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN) as client:
        client.unavailable_tries = 2
        with pytest.raises(Unavailable):
            await client.list_instances()
        assert client.unavailable_retries == 1
    restart(redis_server)


def _sending_to_store() -> list[asyncio.Task[Any]]:
    """The in-process stack's tasks that carry queued store commands to valkey."""
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "AutoPipelineRedis._send"
    ]


@pytest.mark.timeout(60)
async def test_a_store_command_cancelled_under_a_call_is_still_answered(
    stack: FleetClient, settings: Settings, redis_server: ValkeyServer
) -> None:
    """The task sending a call's store command is cancelled (a client library's connection
    dying under it): the call is answered 1501, never a connection closed without an answer
    (aiohttp drops it when a handler raises CancelledError: ``RemoteDisconnected``)."""
    await stack.create_instance("warm")
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)  # the command stays in flight
    try:
        answer = asyncio.create_task(post(settings, LIST))
        await wait_until(lambda: bool(_sending_to_store()), timeout=20)
        for task in _sending_to_store():
            task.cancel()
        status, _, body = await asyncio.wait_for(answer, 30)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    assert (status, body["error"]["code"]) == (503, Unavailable.code), body
