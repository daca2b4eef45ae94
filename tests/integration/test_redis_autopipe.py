"""Auto-pipelining against a real valkey: every caller gets its own reply or error, a burst goes
out in few pipelines, scripts and failures behave as they did one command at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from controlplane import redis_autopipe
from controlplane.redis_autopipe import AutoPipelineRedis
from controlplane.redis_client import close_client, redis_client
from controlplane.store.scripts import BoundScript
from fleet.up import ValkeyServer
from tests.waiters import wait_until


@pytest.fixture
def redis_server(own_redis_server: ValkeyServer) -> ValkeyServer:
    """Of the test's own: these tests write keys of no prefix, flush the server's scripts and
    count its clients."""
    return own_redis_server


class CountingRedis(AutoPipelineRedis):
    """Records the size of every batch it sends (a real client: it still talks to valkey)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    async def _send(self, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        await super()._send(batch)


@pytest.fixture
async def client(redis_server: ValkeyServer) -> AsyncIterator[CountingRedis]:
    pool = aioredis.BlockingConnectionPool.from_url(redis_server.url, decode_responses=True)
    r = CountingRedis.from_pool(pool)
    yield r
    await r.aclose()


async def test_the_services_client_auto_pipelines(redis_server: ValkeyServer) -> None:
    r = redis_client(redis_server.url)
    try:
        assert isinstance(r, AutoPipelineRedis)
        assert await r.ping()
    finally:
        await close_client(r)


async def test_a_burst_goes_out_in_few_pipelines_and_each_caller_gets_its_reply(
    client: CountingRedis,
) -> None:
    n = 300
    await asyncio.gather(*(client.set(f"k{i}", f"v{i}") for i in range(n)))
    got = await asyncio.gather(*(client.get(f"k{i}") for i in range(n)))
    assert got == [f"v{i}" for i in range(n)]
    assert sum(client.batches) == 2 * n
    # Every command of one turn in one batch (split at MAX_BATCH), not one round trip each.
    assert len(client.batches) <= 2 * -(-n // redis_autopipe.MAX_BATCH)
    assert max(client.batches) == redis_autopipe.MAX_BATCH


async def test_one_callers_error_is_its_own(client: CountingRedis) -> None:
    await client.set("plain", "x")
    results = await asyncio.gather(
        client.incr("counter"),
        client.hget("plain", "field"),  # WRONGTYPE: a string is not a hash
        client.incr("counter"),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert results[2] == 2
    assert isinstance(results[1], ResponseError)
    assert "WRONGTYPE" in str(results[1])
    assert client.batches == [1, 3]


async def test_a_cancelled_caller_leaves_the_others_be(client: CountingRedis) -> None:
    first = asyncio.ensure_future(client.incr("n"))
    second = asyncio.ensure_future(client.incr("n"))
    await asyncio.sleep(0)  # both queued in this turn
    first.cancel()
    assert await second in (1, 2)
    assert await client.get("n") == "2"  # the cancelled command was sent all the same


async def test_scripts_survive_a_script_flush(client: CountingRedis) -> None:
    script = BoundScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await asyncio.gather(*(script.on(client)(keys=["s"], args=[1]) for _ in range(5)))
    await client.script_flush()
    # NOSCRIPT comes back to the callers of one batch; each reloads and retries.
    results = await asyncio.gather(*(script.on(client)(keys=["s"], args=[1]) for _ in range(5)))
    assert sorted(results) == [6, 7, 8, 9, 10]


async def test_a_dead_server_fails_every_caller_of_the_batch(tmp_path: Any) -> None:
    server = ValkeyServer(tmp_path / "gone", password="pw", unix=True)
    with server:
        pool = aioredis.BlockingConnectionPool.from_url(
            server.url, decode_responses=True, socket_timeout=2
        )
        r = AutoPipelineRedis.from_pool(pool)
        assert await r.ping()
    try:
        results = await asyncio.gather(*(r.get(f"k{i}") for i in range(10)), return_exceptions=True)
        assert all(isinstance(x, ConnectionError) for x in results), results
    finally:
        await r.aclose()


async def test_a_close_sends_what_is_queued_and_leaves_no_connection_open(
    redis_server: ValkeyServer,
) -> None:
    r = redis_client(redis_server.url)
    queued = asyncio.ensure_future(r.set("queued", "1"))
    await asyncio.sleep(0)  # queued; its batch goes out on a later turn of the loop
    await close_client(r)
    assert queued.done()
    assert await queued  # sent before the close
    with pytest.raises(ConnectionError, match="closed"):
        await r.get("queued")  # refused: it would open a connection nobody closes
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await wait_until(lambda: _clients(admin, 1), timeout=10)  # itself alone
    finally:
        await admin.aclose()


async def _clients(admin: aioredis.Redis, n: int) -> bool:
    return len(await admin.client_list()) == n
