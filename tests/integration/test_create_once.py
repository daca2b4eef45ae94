"""machines.create with an idempotencyKey against the real gateway, valkey and NATS: what a
retrying client, a racing one and a hostile one each get (a retried create whose first
answer was lost must not make a second machine)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from contracts.bus import subjects
from contracts.bus.subjects import EventKind
from contracts.errors import Conflict, Forbidden, IdempotencyKeyReused, InvalidParams
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.httpserve import serving


async def post(
    settings: Settings,
    params: dict[str, Any],
    token: str = ADMIN_TOKEN,
    method: str = "machines.create",
) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    url = f"http://127.0.0.1:{settings.port}/rpc"
    headers = {"Authorization": f"Bearer {token}"}
    data = io.BytesIO(json.dumps(body).encode())
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        return json.loads(await r.text())


async def created_events(bus: Bus, machine_id: str, kind: EventKind = EventKind.CREATED) -> int:
    """How many machine.created (or ``kind``) events the stream holds for this machine."""
    subject = subjects.event(kind, machine_id)
    info = await bus.js.stream_info(subjects.STREAM_NAME, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


@pytest.mark.timeout(120)
async def test_twenty_concurrent_creates_with_one_key_make_one_machine(
    stack: FleetClient, settings: Settings, store: Store, bus: Bus
) -> None:
    inst = await stack.create_instance("raced")
    params = {"instanceId": inst.id, "idempotencyKey": "create-raced-0001"}
    answers = await asyncio.gather(*(post(settings, params) for _ in range(20)))
    assert all("result" in a for a in answers), [a for a in answers if "error" in a][:2]
    ids = {a["result"]["id"] for a in answers}
    assert len(ids) == 1, ids  # before: 20 records, or Conflict for all but the first
    machine_id = ids.pop()
    assert [m.id for m in await store.list_machines(inst.id)] == [machine_id]
    assert await created_events(bus, machine_id) == 1
    # A retry after the first answered: the same machine, still one event.
    again = await post(settings, params)
    assert again["result"]["id"] == machine_id
    assert await created_events(bus, machine_id) == 1


@pytest.mark.timeout(120)
async def test_the_same_key_with_other_params_is_refused(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    first, second = await stack.create_instance("one"), await stack.create_instance("two")
    key = "create-reused-0001"
    made = await post(settings, {"instanceId": first.id, "idempotencyKey": key})
    answer = await post(settings, {"instanceId": second.id, "idempotencyKey": key})
    assert answer["error"]["code"] == IdempotencyKeyReused.code, answer
    assert answer["error"]["data"]["machineId"] == made["result"]["id"]
    assert await store.list_machines(second.id) == []
    other = await post(settings, {"instanceId": first.id, "idempotencyKey": key,
                                  "provider": "swarm"})  # fmt: skip
    assert other["error"]["code"] == IdempotencyKeyReused.code, other


@pytest.mark.timeout(120)
async def test_another_tokens_key_never_answers_its_machine(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    """Two tenants picking the same key (or one guessing the other's): each gets its own
    machine, never the other's; the key is per token."""
    mine, theirs = await stack.create_instance("mine"), await stack.create_instance("theirs")
    my_token = (await stack.create_token("me", mine.id)).token
    their_token = (await stack.create_token("them", theirs.id)).token
    key = "shared-key-0001"
    their_machine = await post(settings, {"instanceId": theirs.id, "idempotencyKey": key},
                               their_token)  # fmt: skip
    # Asking for their instance with their key: the instance check answers, not the key.
    stolen = await post(settings, {"instanceId": theirs.id, "idempotencyKey": key}, my_token)
    assert stolen["error"]["code"] == Forbidden.code, stolen
    own = await post(settings, {"instanceId": mine.id, "idempotencyKey": key}, my_token)
    assert own["result"]["id"] != their_machine["result"]["id"]
    assert own["result"]["instanceId"] == mine.id
    # The admin's keys are its own too: its call with the same key is a new create, which the
    # instance's rule refuses (their machine lives), not an answer of their machine.
    admin = await post(settings, {"instanceId": theirs.id, "idempotencyKey": key})
    assert admin["error"]["code"] == Conflict.code, admin


@pytest.mark.timeout(60)
async def test_a_malformed_key_is_invalid_params_naming_the_field(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    # One through the real gateway; every malformed key is tests/fast/test_idempotency_keys.py's.
    key = "has space!"
    inst = await stack.create_instance("bad-key")
    answer = await post(settings, {"instanceId": inst.id, "idempotencyKey": key})
    assert answer["error"]["code"] == InvalidParams.code, answer
    assert answer["error"]["data"]["field"] == "$.idempotencyKey"
    assert await store.list_machines(inst.id) == []


@pytest.mark.timeout(120)
async def test_the_client_sends_one_key_per_create_and_reuses_it(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    inst = await stack.create_instance("client")
    first = await stack.create_machine(inst.id, idempotency_key="client-key-0001")
    again = await stack.create_machine(inst.id, idempotency_key="client-key-0001")
    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReused):
        await stack.create_machine(inst.id, "swarm", idempotency_key="client-key-0001")
    assert [m.id for m in await store.list_machines(inst.id)] == [first.id]


class LosesFirstAnswer:
    """A proxy in front of the gateway that forwards the first POST /rpc, lets the gateway
    run it, then drops the connection instead of answering (an answer lost to a gateway
    dying, a balancer timing out); later requests pass through."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        headers = {"Authorization": request.headers["Authorization"],
                   "Content-Type": "application/json"}  # fmt: skip
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{self.upstream}/rpc", data=body, headers=headers) as r,
        ):
            answer, status = await r.read(), r.status
        if self.requests == 1:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.Response(body=answer, status=status, content_type="application/json")


@pytest.mark.timeout(120)
async def test_a_create_whose_answer_was_lost_is_retried_into_the_same_machine(
    stack: FleetClient, settings: Settings, store: Store, bus: Bus
) -> None:
    proxy = LosesFirstAnswer(f"http://127.0.0.1:{settings.port}")
    app = web.Application()
    app.router.add_post("/rpc", proxy.handle)
    async with serving(app) as url:
        inst = await stack.create_instance("lost-answer")
        async with FleetClient(url, ADMIN_TOKEN) as client:
            machine = await client.create_machine(inst.id)
            assert client.unavailable_retries == 1
        assert proxy.requests == 2  # before: the cut answer was an error, or a second machine
        assert [m.id for m in await store.list_machines(inst.id)] == [machine.id]
        assert await created_events(bus, machine.id) == 1
