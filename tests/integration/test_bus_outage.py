"""The gateway while its event bus is gone (nats-server stopped under it, as between a NATS
node's death and the client's reconnect to another): calls that need the bus are answered
1501 Unavailable with HTTP 503 and Retry-After, promptly (not a hang, not a 500); calls that
need only the store still work; once nats-server is back the same gateway serves them again,
with no restart."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import msgspec
import pytest

from contracts.errors import Unavailable
from contracts.status import MachineStatus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer
from tests.conftest import ADMIN_TOKEN
from tests.waiters import wait_until

#: The gateway's deadline for a publish (FLEET_GATEWAY_PUBLISH_WAIT_S), short here: the bus
#: stays gone past it, and each call answered Unavailable waits it out. Once the bus is back a
#: publish takes milliseconds, and the calls expected served then are retried until they are.
PUBLISH_WAIT_S = 2.0
#: How long a call needing the bus may take to be answered while the bus is gone: the
#: gateway's deadline, and no more than a few seconds past it.
PROMPT_S = PUBLISH_WAIT_S + 7.0


@pytest.fixture
def nats_server(own_nats_server: NatsServer) -> NatsServer:
    """Of the test's own: these tests stop it under the gateway and start it again."""
    return own_nats_server


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, gateway_publish_wait_s=PUBLISH_WAIT_S)


async def post(settings: Settings, method: str, params: dict[str, Any]) -> tuple[int, Any, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    url = f"http://127.0.0.1:{settings.port}/rpc"
    data = io.BytesIO(json.dumps(body).encode())
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.post(url, data=data, headers=headers) as r,
    ):
        return r.status, r.headers, json.loads(await r.text())


async def unavailable(settings: Settings, method: str, params: dict[str, Any]) -> None:
    # Promptly: a call that waited out the bus's own timeouts fails here.
    async with asyncio.timeout(PROMPT_S):
        status, headers, answer = await post(settings, method, params)
    assert answer.get("error", {}).get("code") == Unavailable.code, (method, answer)
    assert status == 503, (method, status)
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.timeout(180)
async def test_a_stopped_bus_is_answered_unavailable_then_served_again(
    stack: FleetClient, settings: Settings, store: Store, nats_server: NatsServer
) -> None:
    inst = await stack.create_instance("outage")
    nats_server.stop()

    create = {"instanceId": inst.id, "idempotencyKey": "outage-create-01"}
    await unavailable(settings, "machines.create", create)
    await unavailable(settings, "env.set", {"instanceId": inst.id, "name": "A", "value": "1"})
    # What needs only the store is served meanwhile.
    status, _, listed = await post(settings, "instances.list", {})
    assert status == 200
    assert [i["id"] for i in listed["result"]["instances"]] == [inst.id]

    await asyncio.to_thread(nats_server.start)  # the same port and JetStream store

    # The same gateway, not restarted: the create's retry (its key) publishes the event the
    # first try could not, and the machine goes through the whole pipeline.
    async def served() -> bool:
        status, _, answer = await post(settings, "machines.create", create)
        return status == 200 and "result" in answer

    await wait_until(served, timeout=60)
    [machine] = await store.list_machines(inst.id)
    ready = await stack.wait_for(machine.id, [MachineStatus.READY, MachineStatus.FAILED], 60)
    assert ready.status is MachineStatus.READY, ready.status_reason
    status, _, answer = await post(
        settings, "env.set", {"instanceId": inst.id, "name": "A", "value": "1"}
    )
    assert status == 200, answer

    # A call to the machine's daemon while the gateway's bus is gone: 1501 at once, not the
    # daemon's timeout as DaemonTimeout (the daemon is fine; the gateway cannot reach it).
    exec_params = {"machineId": machine.id, "command": ["true"]}
    nats_server.stop()
    await unavailable(settings, "machines.exec", exec_params)
    await asyncio.to_thread(nats_server.start)

    async def exec_served() -> bool:
        status, _, answer = await post(settings, "machines.exec", exec_params)
        return status == 200 and answer.get("result", {}).get("exitCode") == 0

    await wait_until(exec_served, timeout=60)
