"""A gateway on the clustered layout of `fleet up --ha` loses, at once, the NATS node it is
connected to and the valkey primary; a machines.create sent right then, with no client retry,
succeeds, once: one machine, one machine.created in the stream. The gateway rides out the
reconnect, the stream leader's election and the sentinels' promotion within its deadline
(FLEET_GATEWAY_PUBLISH_WAIT_S; the store client's own retries)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from base import natsconn
from contracts.bus import subjects
from controlplane.security.crypto import generate_secret_key
from controlplane.settings import Settings
from controlplane.store.keys import Keys
from fleet.client import FleetClient
from fleet.up.embedded import PortHold
from fleet.up.embedded_ha import HaServers, NatsNode
from services.gateway.__main__ import build as gateway
from tests.conftest import ADMIN_TOKEN
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos


@pytest.fixture
def gateway_settings(ha_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The gateway's two ports held for the test (`PortHold`), as `settings` holds them."""
    with PortHold() as console, PortHold() as previews:
        yield msgspec.structs.replace(
            ha_settings,
            data_dir=str(tmp_path / "data"),
            secret_key=generate_secret_key(),
            admin_token=ADMIN_TOKEN,
            port=console.port,
            preview_port=previews.port,
            log_level="warning",
        )


def _node_serving(ha: HaServers, client_name: str) -> NatsNode:
    """The node a named client is connected to (its monitoring endpoint's connections)."""
    for node in ha.nats:
        url = f"http://127.0.0.1:{node.monitor_port}/connz"
        with urllib.request.urlopen(url, timeout=5) as resp:
            conns = json.load(resp).get("connections") or []
        if any(c.get("name") == client_name for c in conns):
            return node
    raise AssertionError(f"no node serves {client_name!r}")


async def _replicated(ha: HaServers, key: str) -> bool:
    for node in ha.replicas:
        replica = aioredis.Redis(port=node.port, password=ha.primary.password)
        try:
            if not await replica.exists(key):
                return False
        finally:
            await replica.aclose()
    return True


@asynccontextmanager
async def _gateway(ha: HaServers, s: Settings) -> AsyncIterator[tuple[FleetClient, str]]:
    """The gateway on the layout; a client that never retries, and an instance replicated to
    every valkey replica (so that a failover cannot lose it)."""
    async with AsyncExitStack() as es:
        await gateway(s, es)
        fleet = await es.enter_async_context(
            FleetClient(f"http://127.0.0.1:{s.port}", ADMIN_TOKEN, timeout_s=60)
        )
        fleet.unavailable_tries = 1  # no client retry: the gateway alone rides it out
        inst = await fleet.create_instance("ha")
        await wait_until(
            lambda: _replicated(ha, Keys(s.key_prefix).k_instance(inst.id)), timeout=20
        )
        yield fleet, inst.id


@pytest.mark.timeout(120)
async def test_a_create_rides_out_the_loss_of_its_nats_node_and_the_valkey_primary(
    ha: HaServers, gateway_settings: Settings
) -> None:
    async with _gateway(ha, gateway_settings) as (fleet, instance_id):
        _node_serving(ha, "gateway").kill()
        ha.primary.kill()
        machine = await fleet.create_machine(instance_id)

        assert fleet.unavailable_retries == 0
        assert [m.id for m in await fleet.list_machines(instance_id)] == [machine.id]
    await _created_once(ha, machine.id)


#: Longer than a create waited for its publish before the deadline was a setting (8 s).
NO_QUORUM_S = 10.0


@pytest.mark.timeout(120)
async def test_a_create_waits_out_a_stream_without_quorum_within_its_deadline(
    ha: HaServers, gateway_settings: Settings
) -> None:
    """Two of the three nodes gone: the stream has no leader until one is back. A create sent
    meanwhile is still waiting after NO_QUORUM_S (not answered 1501), and succeeds once the
    node is back, within FLEET_GATEWAY_PUBLISH_WAIT_S (20 s)."""
    async with _gateway(ha, gateway_settings) as (fleet, instance_id):
        mine = _node_serving(ha, "gateway")
        other = next(n for n in ha.nats if n is not mine)
        mine.kill()
        other.kill()
        create = asyncio.create_task(fleet.create_machine(instance_id))
        done, _ = await asyncio.wait({create}, timeout=NO_QUORUM_S)
        assert not done, create.result()  # answered while the stream had no leader
        await asyncio.to_thread(other.start)
        machine = await create

        assert fleet.unavailable_retries == 0
        assert [m.id for m in await fleet.list_machines(instance_id)] == [machine.id]
    await _created_once(ha, machine.id)


async def _created_once(ha: HaServers, machine_id: str) -> None:
    subject = subjects.event(subjects.EventKind.CREATED, machine_id)
    nc = await natsconn.connect(ha.nats_url, name="check")
    try:
        js = nc.jetstream(timeout=20)  # the stream may still be electing its leader
        info = await js.stream_info(subjects.STREAM_NAME, subjects_filter=subject)
    finally:
        await nc.close()
    assert info.state.subjects == {subject: 1}
