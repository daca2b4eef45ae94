"""The worker's shared servers (tests/shared_servers.py), on servers of these tests' own: a
test can neither stop them, nor see what the one before it had, nor leave anything behind
without failing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from tests import shared_servers
from tests.shared_servers import SharedServerError, WorkerServers


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerServers]:
    """Servers as a worker's, of these tests' own; a client left is given up on quickly."""
    monkeypatch.setattr(shared_servers, "GONE_WITHIN_S", 1.0)
    with WorkerServers(tmp_path) as made:
        yield made


def test_a_test_cannot_stop_kill_or_start_a_shared_server(servers: WorkerServers) -> None:
    with servers.lend_nats() as nats_server, servers.valkey_namespace("t-a:") as valkey:
        for server in (nats_server, valkey):
            for stop in (server.stop, server.kill, server.start):
                with pytest.raises(SharedServerError, match=r"own_(nats|redis)_server"):
                    stop()
            assert server.proc is not None
            assert server.proc.poll() is None  # still running


def test_the_nats_server_is_lent_to_one_test_at_a_time(servers: WorkerServers) -> None:
    with servers.lend_nats(), pytest.raises(SharedServerError, match="lent already"):  # noqa: SIM117
        with servers.lend_nats():
            pass


async def test_a_tests_streams_are_gone_before_the_next_takes_the_server(
    servers: WorkerServers,
) -> None:
    with servers.lend_nats() as server:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="FLEET_MACHINE_EVENTS", subjects=["machine.>"])
        await nc.jetstream().create_key_value(bucket="left")
        await nc.close()
    with servers.lend_nats() as again:
        assert again.url == server.url  # the same server, emptied
        nc = await nats.connect(again.url)
        assert await nc.jsm().streams_info() == []
        await nc.close()


async def test_a_client_left_connected_fails_the_test_and_the_next_gets_a_new_server(
    servers: WorkerServers,
) -> None:
    left: list[NATS] = []
    urls: list[str] = []

    async def leave_a_client() -> None:
        with servers.lend_nats() as server:
            urls.append(server.url)
            left.append(await nats.connect(server.url, name="left-behind"))

    try:
        with pytest.raises(AssertionError, match="a client connected: left-behind"):
            await leave_a_client()
        with servers.lend_nats() as fresh:
            assert fresh.url != urls[0]
    finally:
        await left[0].close()


async def test_a_tests_keys_are_gone_after_it(servers: WorkerServers) -> None:
    with servers.valkey_namespace("t-1:") as server:
        r = aioredis.Redis.from_url(server.url, decode_responses=True)
        await r.set("t-1:instance:i-1", "x")
        await r.hset("t-1:machine:m-1", "status", "ready")
        await r.aclose()
    with servers.valkey_namespace("t-2:") as again:
        r = aioredis.Redis.from_url(again.url, decode_responses=True)
        assert await r.keys("*") == []
        await r.aclose()


async def test_a_key_outside_the_tests_prefix_fails_it_and_is_removed(
    servers: WorkerServers,
) -> None:
    async def write_outside() -> None:
        with servers.valkey_namespace("t-1:") as server:
            r = aioredis.Redis.from_url(server.url, decode_responses=True)
            await r.set("fleet:instances", "a store on the default prefix")
            await r.aclose()

    with pytest.raises(AssertionError, match=r"1 keys outside its prefix, e\.g\. \['fleet:"):
        await write_outside()
    with servers.valkey_namespace("t-2:") as again:
        r = aioredis.Redis.from_url(again.url, decode_responses=True)
        assert await r.keys("*") == []
        await r.aclose()


async def test_a_valkey_client_left_connected_fails_the_test(servers: WorkerServers) -> None:
    left: list[aioredis.Redis] = []

    async def leave_a_client() -> None:
        with servers.valkey_namespace("t-1:") as server:
            left.append(aioredis.Redis.from_url(server.url, client_name="left-behind"))
            await left[0].ping()

    try:
        with pytest.raises(AssertionError, match="a client connected: left-behind"):
            await leave_a_client()
    finally:
        await left[0].aclose()
