"""`fleet up` restarts an embedded server that dies (fleet.up.servers), on its port and data
dir: a SIGKILLed NATS node comes back and catches up with the stream it missed events of; a
SIGKILLed valkey primary comes back and, the sentinels having promoted a replica meanwhile,
is a replica of the new primary. The cluster is whole again: 3 current stream replicas, a
primary with 2 linked replicas."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from contracts.bus import subjects
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.up import SENTINEL_MASTER, HaServers, NatsServer, ValkeyServer
from fleet.up.servers import ServerSupervisor
from tests.integration.test_consumer import created
from tests.integration.test_ha import _primary_port
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos


def sigkill(server: NatsServer | ValkeyServer) -> int:
    assert server.proc is not None
    pid = server.proc.pid
    os.kill(pid, signal.SIGKILL)
    return pid


async def stream_whole(bus: Bus) -> bool:
    """3 peers, each current and online, none lagging."""
    cluster = (await bus.js.stream_info(subjects.STREAM_NAME)).cluster
    if cluster is None or cluster.leader is None:
        return False
    peers = cluster.replicas or []
    return len(peers) == 2 and all(p.current and not p.offline and not p.lag for p in peers)


async def sentinel_view(ha: HaServers) -> tuple[int, dict[int, str]]:
    """(the primary's port, {replica port: flags}) as the first sentinel sees them."""
    r = aioredis.Redis(
        port=ha.sentinels[0].port, password=ha.primary.password, decode_responses=True
    )
    try:
        _, port = await r.execute_command("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)
        rows = await r.execute_command("SENTINEL", "REPLICAS", SENTINEL_MASTER)
    finally:
        await r.aclose()
    # redis-py parses each row into a dict (``flags`` the string, ``port`` an int)
    return int(port), {int(row["port"]): str(row["flags"]) for row in rows}


@pytest.mark.timeout(150)
async def test_a_killed_nats_node_and_valkey_primary_come_back_and_the_cluster_is_whole(
    ha: HaServers, ha_settings: Settings
) -> None:
    with ServerSupervisor() as supervisor:  # it holds a dead server's ports until it is back
        supervisor.watch_all(ha.labelled())
        async with Bus(ha_settings, name="test") as bus:
            await wait_until(lambda: stream_whole(bus), timeout=30, every=0.2)
            url = bus.nc.connected_url
            assert url is not None
            node = next(n for n in ha.nats if n.port != url.port)  # not the one this client uses
            old_primary = ha.primary
            killed = {sigkill(node), sigkill(old_primary)}
            # Supervised at once, as `fleet up` does: the old primary waits for the sentinels'
            # failover and comes back as a replica of the new primary, never as a primary that
            # clients reconnect to and whose writes the failover then discards.
            supervised = asyncio.create_task(
                _supervise(supervisor, lambda: _both_back(killed, node, old_primary))
            )
            for _ in range(20):  # events the dead node misses and must catch up on
                await bus.publish(created())
            lines = await supervised
            assert await _primary_port(ha) != old_primary.port
            await wait_until(lambda: _role(old_primary) is not None, timeout=30, every=0.1)
            assert _role(old_primary) == "slave"
            assert any(f"nats node {node.server_name}" in line for line in lines), lines
            assert any("valkey redis-0" in line for line in lines), lines
            assert node.proc is not None
            assert old_primary.proc is not None
            assert {node.proc.pid, old_primary.proc.pid}.isdisjoint(killed)

            await wait_until(lambda: stream_whole(bus), timeout=60, every=0.2)

            async def old_primary_is_a_replica() -> bool:
                primary, replicas = await sentinel_view(ha)
                return (
                    primary != old_primary.port
                    and replicas.get(old_primary.port) == "slave"
                    and sorted(replicas.values()) == ["slave", "slave"]
                )

            await wait_until(old_primary_is_a_replica, timeout=60, every=0.3)


async def _supervise(supervisor: ServerSupervisor, done: Callable[[], bool]) -> list[str]:
    """Run the supervisor's checks (what `fleet up`'s loop does) until ``done``."""
    lines: list[str] = []

    def step() -> bool:
        lines.extend(supervisor.check(time.monotonic()))
        return done()

    await wait_until(step, timeout=30, every=0.1)
    return lines


def _role(server: ValkeyServer) -> str | None:
    """Its replication role, None while it does not answer yet."""
    try:
        with redis.Redis(port=server.port, password=server.password, socket_timeout=2) as r:
            return str(r.info("replication")["role"])
    except (redis.RedisError, OSError):
        return None


def _both_back(killed: set[int], *servers: NatsServer | ValkeyServer) -> bool:
    """Each runs as a new process (a killed one not yet reaped still polls as running)."""
    return all(
        s.proc is not None and s.proc.pid not in killed and s.proc.poll() is None for s in servers
    )


@pytest.mark.timeout(150)
def test_the_layout_starts_again_on_the_data_dir_of_one_that_ended(tmp_path: Path) -> None:
    """The next `fleet up --ha` on a data dir: new ports, so each sentinel's configuration
    file (kept across its own restarts, what it learnt is in it) is written again."""
    password = secrets.token_urlsafe(16)
    ports = []
    for _ in range(2):
        with HaServers(tmp_path / "ha", auth=None, redis_password=password) as ha:
            ports.append(ha.sentinel_addrs)
    assert ports[0] != ports[1]
