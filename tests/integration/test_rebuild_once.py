"""machines.rebuild with an idempotencyKey against the real gateway, valkey, NATS and daemons:
what a retrying client, a racing one and a hostile one each get. A retried rebuild must not
archive the machine the first one made and make another."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from contracts.bus.subjects import EventKind
from contracts.errors import Forbidden, IdempotencyKeyReused, InvalidParams, Unavailable
from contracts.models import Machine
from contracts.status import ARCHIVED_OR_ARCHIVING, MachineStatus as S
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer
from tests.conftest import ADMIN_TOKEN
from tests.httpserve import serving
from tests.integration.test_create_once import LosesFirstAnswer, created_events, post
from tests.waiters import wait_until

REBUILD = "machines.rebuild"


async def rebuild(settings: Settings, params: dict[str, Any], token: str = ADMIN_TOKEN) -> Any:
    return await post(settings, params, token, method=REBUILD)


async def ready_machine(stack: FleetClient, name: str) -> Machine:
    inst = await stack.create_instance(name)
    machine = await stack.create_machine(inst.id)
    ready = await stack.wait_for(machine.id, [S.READY, S.FAILED], 60)
    assert ready.status is S.READY, ready.status_reason
    return ready


async def events_of(bus: Bus, old: str, new: str) -> tuple[int, int]:
    """(machine.archived of the replaced machine, machine.created of the new one)."""
    return (await created_events(bus, old, EventKind.ARCHIVED), await created_events(bus, new))


@pytest.mark.timeout(180)
async def test_twenty_concurrent_rebuilds_with_one_key_rebuild_once(
    stack: FleetClient, settings: Settings, store: Store, bus: Bus
) -> None:
    old = await ready_machine(stack, "raced-rebuild")
    params = {"instanceId": old.instance_id, "idempotencyKey": "rebuild-raced-0001"}
    answers = await asyncio.gather(*(rebuild(settings, params) for _ in range(20)))
    assert all("result" in a for a in answers), [a for a in answers if "error" in a][:2]
    ids = {a["result"]["id"] for a in answers}
    assert len(ids) == 1, ids  # before: up to 20 machines, each archiving the one before
    new = ids.pop()
    machines = {m.id: m.status for m in await store.list_machines(old.instance_id)}
    assert set(machines) == {old.id, new}
    assert machines[old.id] in ARCHIVED_OR_ARCHIVING
    assert await events_of(bus, old.id, new) == (1, 1)
    ready = await stack.wait_for(new, [S.READY, S.FAILED], 60)
    assert ready.status is S.READY, ready.status_reason
    # A retry long after: the same machine, left running; still one event of each.
    again = await rebuild(settings, params)
    assert again["result"]["id"] == new
    assert (await store.get_machine(new)).status is S.READY
    assert await events_of(bus, old.id, new) == (1, 1)


@pytest.mark.timeout(120)
async def test_another_tokens_rebuild_key_never_answers_its_machine(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    mine, theirs = await stack.create_instance("mine"), await stack.create_instance("theirs")
    my_token = (await stack.create_token("me", mine.id)).token
    their_token = (await stack.create_token("them", theirs.id)).token
    key = "shared-rebuild-0001"
    made = await rebuild(settings, {"instanceId": theirs.id, "idempotencyKey": key}, their_token)
    their_machine = made["result"]["id"]
    # Their instance with their key: refused by the instance check, nothing archived.
    stolen = await rebuild(settings, {"instanceId": theirs.id, "idempotencyKey": key}, my_token)
    assert stolen["error"]["code"] == Forbidden.code, stolen
    assert "machineId" not in (stolen["error"].get("data") or {})
    assert (await store.get_machine(their_machine)).status not in ARCHIVED_OR_ARCHIVING
    # My instance with the same key: my own rebuild, not an answer of their machine.
    own = await rebuild(settings, {"instanceId": mine.id, "idempotencyKey": key}, my_token)
    assert own["result"]["id"] != their_machine
    assert own["result"]["instanceId"] == mine.id
    # The admin's keys are its own: the same key is a new rebuild of their instance.
    admin = await rebuild(settings, {"instanceId": theirs.id, "idempotencyKey": key})
    assert admin["result"]["id"] != their_machine


@pytest.mark.timeout(120)
async def test_a_key_used_for_other_params_is_refused(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    one, two = await stack.create_instance("one"), await stack.create_instance("two")
    made = await post(settings, {"instanceId": one.id, "idempotencyKey": "used-for-create-1"})
    # A create's key sent with a rebuild of the same instance: another method.
    answer = await rebuild(settings, {"instanceId": one.id, "idempotencyKey": "used-for-create-1"})
    assert answer["error"]["code"] == IdempotencyKeyReused.code, answer
    assert answer["error"]["data"]["machineId"] == made["result"]["id"]
    assert (await store.get_machine(made["result"]["id"])).status not in ARCHIVED_OR_ARCHIVING
    first = await rebuild(settings, {"instanceId": one.id, "idempotencyKey": "rebuild-other-1"})
    other = await rebuild(settings, {"instanceId": two.id, "idempotencyKey": "rebuild-other-1"})
    assert other["error"]["code"] == IdempotencyKeyReused.code, other
    assert other["error"]["data"]["machineId"] == first["result"]["id"]
    assert await store.list_machines(two.id) == []


@pytest.mark.timeout(60)
async def test_a_malformed_rebuild_key_is_invalid_params_naming_the_field(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    # One through the real gateway; every malformed key is tests/fast/test_idempotency_keys.py's.
    key = "has space!"
    inst = await stack.create_instance("bad-key")
    machine = await stack.create_machine(inst.id)
    answer = await rebuild(settings, {"instanceId": inst.id, "idempotencyKey": key})
    assert answer["error"]["code"] == InvalidParams.code, answer
    assert answer["error"]["data"]["field"] == "$.idempotencyKey"
    assert [m.id for m in await store.list_machines(inst.id)] == [machine.id]
    assert (await store.get_machine(machine.id)).status not in ARCHIVED_OR_ARCHIVING


@pytest.mark.timeout(120)
async def test_a_rebuild_whose_answer_was_lost_is_retried_into_the_same_machine(
    stack: FleetClient, settings: Settings, store: Store, bus: Bus
) -> None:
    inst = await stack.create_instance("lost-rebuild")
    old = await stack.create_machine(inst.id)
    proxy = LosesFirstAnswer(f"http://127.0.0.1:{settings.port}")
    app = web.Application()
    app.router.add_post("/rpc", proxy.handle)
    async with serving(app) as url, FleetClient(url, ADMIN_TOKEN) as client:
        new = await client.rebuild_machine(inst.id)
        assert client.unavailable_retries == 1
    assert proxy.requests == 2  # before: the cut answer was an error, not resent
    machines = {m.id: m.status for m in await store.list_machines(inst.id)}
    assert set(machines) == {old.id, new.id}  # before a key: a third, and `new` archived
    assert machines[old.id] in ARCHIVED_OR_ARCHIVING
    assert machines[new.id] not in ARCHIVED_OR_ARCHIVING
    assert await events_of(bus, old.id, new.id) == (1, 1)


class TestDuringABusOutage:
    @pytest.fixture
    def nats_server(self, own_nats_server: NatsServer) -> NatsServer:
        """Of the test's own: it stops it under the stack and starts it again."""
        return own_nats_server

    @pytest.mark.timeout(180)
    async def test_a_rebuild_during_a_bus_outage_is_finished_by_its_retry(
        self,
        stack: FleetClient,
        settings: Settings,
        store: Store,
        bus: Bus,
        nats_server: NatsServer,
    ) -> None:
        """The first try stores the new machine, then cannot publish (nats-server stopped): 1501,
        the new machine `created`. Its retry with the key once NATS is back archives the old one
        and publishes machine.created: the new machine goes ready, one event of each."""
        old = await ready_machine(stack, "outage-rebuild")
        params = {"instanceId": old.instance_id, "idempotencyKey": "outage-rebuild-01"}
        nats_server.stop()
        first = await rebuild(settings, params)
        assert first["error"]["code"] == Unavailable.code, first
        [new] = [m for m in await store.list_machines(old.instance_id) if m.id != old.id]
        assert new.status is S.CREATED
        await asyncio.to_thread(nats_server.start)  # the same port and JetStream store

        async def served() -> bool:
            answer = await rebuild(settings, params)
            return answer.get("result", {}).get("id") == new.id

        await wait_until(served, timeout=60)
        ready = await stack.wait_for(new.id, [S.READY, S.FAILED], 60)
        assert ready.status is S.READY, ready.status_reason
        assert (await store.get_machine(old.id)).status in ARCHIVED_OR_ARCHIVING
        assert await events_of(bus, old.id, new.id) == (1, 1)
