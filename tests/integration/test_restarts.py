"""The servers restart under a running stack: nothing is lost, everything carries on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.status import MachineStatus
from fleet.client import FleetClient
from fleet.up import NatsServer, ValkeyServer
from tests.conftest import CloneLog


@pytest.fixture
def nats_server(own_nats_server: NatsServer) -> NatsServer:
    """Of the test's own: a test here restarts it under a running stack."""
    return own_nats_server


@pytest.fixture
def redis_server(own_redis_server: ValkeyServer) -> ValkeyServer:
    """Of the test's own: a test here restarts it under a running stack."""
    return own_redis_server


async def test_redis_restart_keeps_state_and_service(
    stack: FleetClient, redis_server: ValkeyServer
) -> None:
    inst = await stack.create_instance("survivor")
    await stack.set_env("KEPT", "yes", inst.id)
    redis_server.stop()  # SIGTERM: valkey writes out its append-only file
    redis_server.start()  # same port, same directory
    assert [i.id for i in await stack.list_instances()] == [inst.id]
    assert [(v.name, v.value) for v in await stack.list_env(inst.id)] == [("KEPT", "yes")]
    machine = await stack.create_machine(inst.id)
    machine = await stack.wait_for(machine.id, {"ready", "failed"}, timeout_s=60)
    assert machine.status is MachineStatus.READY, machine.status_reason


async def test_nats_restart_mid_pipeline_loses_nothing(
    stack: FleetClient, nats_server: NatsServer, bare_repo: Path, clone_log: CloneLog
) -> None:
    ids = []
    for n in range(5):
        inst = await stack.create_instance(f"batch-{n}")
        await stack.add_repo(inst.id, str(bare_repo), "main", "app")
        ids.append((await stack.create_machine(inst.id)).id)
    nats_server.stop()  # mid-batch: some machines are booting, some setting up
    nats_server.start()  # same port, JetStream state from disk
    machines = await asyncio.gather(
        *(stack.wait_for(mid, {"ready", "failed"}, timeout_s=90) for mid in ids)
    )
    assert [m.status for m in machines] == [MachineStatus.READY] * 5, [
        m.status_reason for m in machines
    ]
    assert len(clone_log.homes()) == 5  # one clone per machine, none repeated
