"""What the egress proxy keeps of an instance's secrets between requests
(services/provisioner/egress/secrets_cache.py), against a real nats-server: a change the gateway
announces (the events ``secrets.*`` and ``repos.*`` publish, through the JetStream stream) is
heard at once, a lost bus keeps nothing, the round bounds the rest. The whole path, a deleted
secret on a connection a machine keeps open: tests/integration/test_secrets.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from base.natsconn import connect
from contracts.bus.events import EnvChanged, ReposChanged
from contracts.ids import new_event_id
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import StoredSecret
from fleet.up import NatsServer
from services.provisioner.egress.secrets_cache import SecretsCache
from tests.fakes.clock import TICK, ManualClock
from tests.waiters import wait_until

ROUND_S = 60.0
HOST = ("api.corp.example", 443)


class Store:
    """The store as the cache reads it: each instance's secrets, and each read counted (a
    read may be held until the test lets it go)."""

    def __init__(self) -> None:
        self.secrets: dict[str, list[StoredSecret]] = {}
        self.reads: list[str] = []
        self.hold: asyncio.Event | None = None

    async def read(self, instance_id: str, host: str, port: int) -> list[StoredSecret]:
        found = list(self.secrets.get(instance_id, []))
        self.reads.append(instance_id)
        if self.hold is not None:
            await self.hold.wait()
        return found


def _secret(name: str) -> StoredSecret:
    return StoredSecret(name=name, hosts=[HOST[0]], header="Authorization",
                        format="Bearer {value}", sealed="sealed")  # fmt: skip


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Bus]:
    """The gateway's bus: what it publishes after a change to secrets or repos."""
    async with Bus(settings, name="gateway") as bus:
        yield bus


async def _names(cache: SecretsCache, instance_id: str) -> list[str]:
    return [s.name for s in await cache.secrets(instance_id, *HOST)]


async def test_a_read_is_kept_until_its_instance_changes(settings: Settings, gateway: Bus) -> None:
    store = Store()
    store.secrets = {"i-a": [_secret("API_KEY")], "i-b": [_secret("OTHER")]}
    nc = await connect(settings.nats_url, name="provisioner")
    try:
        async with SecretsCache(store.read, nc, ROUND_S) as cache:
            for _ in range(3):  # one read for many requests
                assert await _names(cache, "i-a") == ["API_KEY"]
                assert await _names(cache, "i-b") == ["OTHER"]
            assert store.reads == ["i-a", "i-b"]

            # secrets.delete: the store written, then the change published.
            store.secrets["i-a"] = []
            await gateway.publish(EnvChanged(event_id=new_event_id(), instance_id="i-a",
                                             name="API_KEY"))  # fmt: skip
            await wait_until(lambda: cache.heard == 1)
            assert await _names(cache, "i-a") == []
            assert await _names(cache, "i-b") == ["OTHER"]  # another instance's is kept
            assert store.reads == ["i-a", "i-b", "i-a"]

            # repos.remove: a private repo's credentials go as a secret's do.
            store.secrets["i-b"] = []
            await gateway.publish(ReposChanged(event_id=new_event_id(), instance_id="i-b",
                                               path="src/app"))  # fmt: skip
            await wait_until(lambda: cache.heard == 2)
            assert await _names(cache, "i-b") == []
    finally:
        await nc.close()


async def test_a_read_a_change_overtook_is_used_once_and_not_kept(
    settings: Settings, gateway: Bus
) -> None:
    """A read that began before the change it was overtaken by may hold what the change
    removed: it answers its own request (which the change did not precede) and no later one."""
    store = Store()
    store.secrets = {"i-a": [_secret("API_KEY")]}
    nc = await connect(settings.nats_url, name="provisioner")
    try:
        async with SecretsCache(store.read, nc, ROUND_S) as cache:
            store.hold = asyncio.Event()
            reading = asyncio.create_task(_names(cache, "i-a"))
            await wait_until(lambda: store.reads == ["i-a"])
            store.secrets["i-a"] = []
            await gateway.publish(EnvChanged(event_id=new_event_id(), instance_id="i-a",
                                             name="API_KEY"))  # fmt: skip
            await wait_until(lambda: cache.heard == 1)
            store.hold.set()
            assert await reading == ["API_KEY"]
            assert await _names(cache, "i-a") == []
            assert await _names(cache, "i-a") == []
            assert store.reads == ["i-a"] * 2
    finally:
        await nc.close()


async def test_a_read_is_kept_no_longer_than_the_round(settings: Settings) -> None:
    """A notice lost without the connection (a slow consumer's dropped message) is bounded by
    ``FLEET_REVOCATION_ROUND_S``."""
    store, clock = Store(), ManualClock()
    store.secrets = {"i-a": [_secret("API_KEY")]}
    nc = await connect(settings.nats_url, name="provisioner")
    try:
        async with SecretsCache(store.read, nc, ROUND_S, clock) as cache:
            await _names(cache, "i-a")
            await clock.advance(ROUND_S - TICK)
            await _names(cache, "i-a")
            assert len(store.reads) == 1
            await clock.advance(TICK)
            await _names(cache, "i-a")
            assert len(store.reads) == 2
    finally:
        await nc.close()


async def test_nothing_is_kept_while_the_bus_is_down_nor_across_a_reconnect(
    tmp_path: Path,
) -> None:
    """A notice sent while the provisioner's connection is down is lost: the store is read for
    each request then, and what was read before the outage is not used after it."""
    store = Store()
    store.secrets = {"i-a": [_secret("API_KEY")]}
    with NatsServer(tmp_path / "nats") as server:
        nc = await connect(server.url, name="provisioner", wait_s=(0.05, 0.1))
        try:
            async with SecretsCache(store.read, nc, ROUND_S) as cache:
                await _names(cache, "i-a")
                await _names(cache, "i-a")
                assert len(store.reads) == 1

                server.stop()
                await wait_until(lambda: not nc.is_connected)
                store.secrets["i-a"] = []  # deleted, and the notice lost with the bus
                assert await _names(cache, "i-a") == []
                assert await _names(cache, "i-a") == []
                assert len(store.reads) == 3

                server.start()
                await wait_until(lambda: nc.is_connected, timeout=30)
                assert await _names(cache, "i-a") == []  # read again on the new connection...
                assert await _names(cache, "i-a") == []  # ...and kept from then on
                assert len(store.reads) == 4
        finally:
            await nc.close()
