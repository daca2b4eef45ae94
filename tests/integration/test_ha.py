"""The clustered layout of `fleet up --ha` (fleet.up.embedded_ha): a service survives losing the
valkey primary (Sentinel names the new one) and the NATS node it talks to (it reconnects to
another node and its durable consumer goes on)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import MaxConnectionsError

from contracts.bus.events import MachineCreated
from controlplane.bus import Bus
from controlplane.events.consumer import stage_consumer
from controlplane.redis_client import (
    BlockingSentinelPool,
    close_client,
    redis_client,
    sentinel_addrs,
)
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.up import SENTINEL_MASTER, HaServers
from tests.integration.test_consumer import created
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos


async def _primary_port(ha: HaServers) -> int:
    sentinel = aioredis.Redis(port=ha.sentinels[0].port, password=ha.primary.password)
    try:
        _, port = await sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "fleetd")
        return int(port)
    finally:
        await sentinel.aclose()


@pytest.mark.timeout(90)
async def test_the_store_follows_the_primary_across_a_failover(
    ha: HaServers, ha_settings: Settings
) -> None:
    async with Store.of(ha_settings) as store:
        before = await store.create_instance("before")

        async def replicated() -> bool:
            replica = aioredis.Redis(port=ha.replicas[0].port, password=ha.primary.password)
            try:
                return bool(await replica.exists(store.keys.k_instance(before.id)))
            finally:
                await replica.aclose()

        await wait_until(replicated, timeout=20)
        old_port = ha.primary.port
        ha.primary.kill()
        # Sent while the primary is dead: the command's retries ask the sentinels again, and
        # reach the primary they promote (redis/redis-py#3874: redis-py alone retries the dead
        # address until its retries run out).
        during = await store.create_instance("during")
        assert await _primary_port(ha) != old_port
        # The same client: its next commands reach the new primary (no restart, no new URL).
        after = await store.create_instance("after")
        assert (await store.get_instance(before.id)).name == "before"
        assert (await store.get_instance(during.id)).name == "during"
        assert (await store.get_instance(after.id)).name == "after"


@pytest.mark.timeout(90)
async def test_a_consumer_goes_on_after_its_nats_node_dies(
    ha: HaServers, ha_settings: Settings
) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()

    async def take(event: MachineCreated) -> None:
        got.put_nowait(event.machine_id)

    async def never(event: MachineCreated, reason: str) -> None:
        raise AssertionError(reason)

    async with (
        Bus(ha_settings, name="test") as bus,
        stage_consumer(
            bus, ha_settings, durable="test", event_type=MachineCreated, handler=take, give_up=never
        ),
    ):
        first = created()
        await bus.publish(first)
        assert await asyncio.wait_for(got.get(), 20) == first.machine_id
        url = bus.nc.connected_url
        assert url is not None
        node = next(n for n in ha.nats if n.port == url.port)
        node.kill()
        second = created()
        await bus.publish(second)  # retried until the cluster answers without that node

        async def second_handled() -> None:
            # At least once: the first may come again (its ack went to the node that died).
            while await got.get() != second.machine_id:
                pass

        await asyncio.wait_for(second_handled(), 40)
        now = bus.nc.connected_url
        assert now is not None
        assert now.port != node.port


@pytest.mark.timeout(90)
async def test_a_burst_larger_than_the_sentinel_pool_waits_for_connections(
    ha: HaServers, ha_settings: Settings
) -> None:
    """40 commands at once that each hold a connection 0.2 s, on a pool of 4: they queue for
    a connection (about 2 s) instead of failing with "Too many connections" (what redis-py's
    own Sentinel pool does: shown first, on the same burst). Each is sent in a loop turn of
    its own: the client's auto-pipelining (redis_autopipe.py) sends one turn's commands down
    one connection, one after another, and the pool's bound would never be reached."""
    burst, size = 40, 4

    async def blpop(client: aioredis.Redis, i: int) -> object:
        for _ in range(i):  # command i in turn i: alone in its turn, on a connection of its own
            await asyncio.sleep(0)
        return await client.blpop([f"nothing:{i}"], 0.2)

    async def run_burst(client: aioredis.Redis) -> list[object]:
        blpops = (blpop(client, i) for i in range(burst))
        return await asyncio.gather(*blpops, return_exceptions=True)

    plain = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addrs(ha.sentinel_addrs),
        sentinel_kwargs={"password": ha.primary.password},
        password=ha.primary.password,
    )
    own_pool = plain.master_for(SENTINEL_MASTER, max_connections=size)
    try:
        refused = [r for r in await run_burst(own_pool) if r is not None]
    finally:
        await close_client(own_pool)
    assert refused
    assert all(isinstance(r, MaxConnectionsError) for r in refused), refused
    assert "Too many connections" in str(refused[0])

    client = redis_client(
        ha.redis_url, sentinels=ha.sentinel_addrs, master=SENTINEL_MASTER, max_connections=size
    )
    try:
        pool = client.connection_pool
        assert isinstance(pool, BlockingSentinelPool)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(pool._in_use_connections))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        assert await run_burst(client) == [None] * burst
        watcher.cancel()
        assert peak == size  # the burst used the pool whole, and no more of it
    finally:
        await close_client(client)
