"""Webhooks against a tenant who fills them (issue 78's attacks, in memory): ``webhooks.test``
spends a budget; an endpoint holds at most its bound of events and bytes, past which the
oldest of its largest queue are dropped and counted (a machine that floods its own status
events drops its own, never another machine's); one instance's slow endpoints hold at most
``FLEET_WEBHOOK_INSTANCE_CONCURRENCY`` of a process's slots; a name whose servers never
answer ends its attempt, and a create, in time. (On the real servers:
tests/integration/test_webhooks_bounds.py.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import msgspec
import pytest

from contracts.bus.events import DaemonStatusReported, encode_event, subject_of
from contracts.errors import InvalidParams, RateLimited
from contracts.gateway.webhooks import CreateWebhookParams
from contracts.ids import new_event_id
from controlplane.policy import NameLookups, Rules, Target
from controlplane.settings import Settings
from controlplane.store import NO_MACHINE, QueueBound
from services.gateway.auth import Caller
from services.gateway.auth.callers import current_caller, user_caller
from services.gateway.rpc import WebhookMakers, WebhookOps
from services.gateway.rpc.people import find_user
from services.webhooks.deliver import Deliveries
from services.webhooks.fanout import Fanout
from services.webhooks.post import Answer
from tests.fast.conftest import ADMIN, World
from tests.fast.test_webhooks import URL, Endpoint, fan_out, owner_of, service, settle

method = pytest.mark.gateway_method


@method("webhooks.test")
async def test_a_members_webhook_tests_spend_a_budget(world: World) -> None:
    i = (await world.instance()).id
    owner = owner_of(i)
    made = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]},
                           owner)  # fmt: skip
    for _ in range(world.settings.rate_webhook_test_per_min):
        await world.rpc("webhooks.test", {"webhookId": made["id"]}, owner)
    with pytest.raises(RateLimited, match="webhook tests") as refused:
        await world.rpc("webhooks.test", {"webhookId": made["id"]}, owner)
    assert (refused.value.data or {}).get("retryAfterS", 0) >= 1
    got = await world.rpc("webhooks.deliveries", {"webhookId": made["id"]}, owner)
    assert got["pending"] == world.settings.rate_webhook_test_per_min  # the refused queued none


@method("webhooks.test", "webhooks.deliveries")
async def test_an_endpoint_holds_its_bound_and_drops_its_oldest(world: World) -> None:
    world.reconfigure(webhook_queue_max_events=20)
    i = (await world.instance()).id
    made = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    sent = [(await world.rpc("webhooks.test", {"webhookId": made["id"]}))["eventId"]
            for _ in range(60)]  # an admin's: no budget, the bound alone  # fmt: skip
    got = await world.rpc("webhooks.deliveries", {"webhookId": made["id"]})
    assert (got["pending"], got["dropped"]) == (20, 40)
    queue = world.store.keys.k_webhook_queue(made["id"], NO_MACHINE)
    assert await world.store.redis.zrange(queue, 0, -1) == sent[40:]  # the newest kept
    endpoint = Endpoint()
    async with service(world, endpoint) as (_, deliveries):
        await settle(deliveries)
    assert [h["webhook-id"] for _, h, _ in endpoint.sent] == sent[40:]
    assert await bytes_waiting(world, made["id"]) == 0


async def bytes_waiting(world: World, webhook_id: str) -> int:
    got = await world.store.redis.hget(world.store.keys.k_webhook(webhook_id), "queuedBytes")
    return int(got or 0)


def flood(machine_id: str, n: int, size: int) -> list[DaemonStatusReported]:
    """What root of a machine can publish on its own status subject: big reports."""
    return [DaemonStatusReported(machine_id=machine_id, event_id=new_event_id(),
                                 status="ready", version="v" * size, boot_id=f"b{k}")
            for k in range(n)]  # fmt: skip


@dataclass
class Gated(Endpoint):
    """Endpoints whose path holds one of ``slow_paths`` answer once the gate opens; the others
    at once."""

    slow_paths: tuple[str, ...] = ("/slow",)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    fast: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    async def __call__(self, target: Target, headers: dict[str, str], body: bytes) -> Answer:
        if any(p in target.path for p in self.slow_paths):
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
        else:
            self.fast.set()
        return await super().__call__(target, headers, body)


async def test_a_machine_flooding_its_events_drops_its_own_never_anothers(world: World) -> None:
    world.settings = msgspec.structs.replace(world.settings, webhook_queue_max_bytes=256 * 1024)
    made = await world.rpc("webhooks.create", {"url": URL, "events": ["*"]})  # the platform's
    victim, attacker = await world.ready_machine(), await world.ready_machine()
    endpoint = Gated(slow_paths=("",))  # nothing answers: every event waits
    async with service(world, endpoint) as (fanout, _):
        await fan_out(world, fanout)
        victims = await queued(world, made["id"], victim.id)
        seq = len(world.bus.events)
        for n, event in enumerate(flood(attacker.id, 40, 60_000), seq + 1):
            await fanout.queue(encode_event(event), subject_of(event), n)
        assert await queued(world, made["id"], victim.id) == victims  # every one still there
        assert 0 < await bytes_waiting(world, made["id"]) <= 256 * 1024
        got = await world.rpc("webhooks.deliveries", {"webhookId": made["id"]})
        assert got["dropped"] >= 40 - 256 * 1024 // 60_000
        endpoint.gate.set()


async def queued(world: World, webhook_id: str, machine_id: str) -> list[str]:
    key = world.store.keys.k_webhook_queue(webhook_id, machine_id)
    return cast(list[str], await world.store.redis.zrange(key, 0, -1))


@pytest.mark.parametrize("answer", [200, 500])
async def test_an_event_dropped_while_it_is_sent_is_settled_and_leaves_nothing(
    world: World, answer: int
) -> None:
    made = await world.rpc("webhooks.create", {"url": URL, "events": ["*"]})
    w, machine = made["id"], "m-0123456789abcdef"
    records = world.store.webhooks
    for n, event in enumerate(flood(machine, 3, 100), 1):
        await records.enqueue([(w, False)], queue=machine, seq=n, event_id=event.event_id,
                              body=encode_event(event), now_ms=0,
                              bound=QueueBound.of(world.settings))  # fmt: skip
    async with service(world, Endpoint(answers=[answer])) as (_, deliveries):
        ((m, _),) = await records.claim(0, deliveries.lease_ms, 1, deliveries.token,
                                        most_per_scope=1, held={})  # fmt: skip
        head = await records.head(m, deliveries.token, 0, deliveries.lease_ms)
        assert not isinstance(head, int)
        await records.trim(w, QueueBound(events=0, bytes=0))  # all dropped, the head too
        assert not await deliveries.attempt(m, head)  # nothing more: the queue is let go
    got = await world.rpc("webhooks.deliveries", {"webhookId": w})
    assert (got["pending"], got["dropped"], len(got["attempts"])) == (0, 3, 1)
    keys, redis = world.store.keys, world.store.redis
    assert not await redis.hlen(keys.k_webhook_tries(w))
    assert not await redis.zcard(keys.k_webhook_sizes(w))
    assert not await redis.zcard(keys.K_WEBHOOKS_DUE)
    assert not await redis.hlen(keys.K_WEBHOOKS_LEASES)
    assert await bytes_waiting(world, w) == 0


async def test_one_instances_slow_endpoints_leave_slots_to_the_others(world: World) -> None:
    slow = (await world.instance("slow")).id
    for n in range(12):
        await world.rpc("webhooks.create", {"instanceId": slow, "url": f"{URL}/slow{n}",
                                            "events": ["*"]})  # fmt: skip
    victim = (await world.instance("victim")).id
    made = await world.rpc("webhooks.create", {"instanceId": victim, "url": f"{URL}/victim",
                                               "events": ["machine.ready"]})  # fmt: skip
    await world.ready_machine(slow)
    await world.ready_machine(victim)
    endpoint = Gated()
    async with service(world, endpoint, webhook_concurrency=10,
                       webhook_instance_concurrency=4) as (fanout, deliveries):  # fmt: skip
        await fan_out(world, fanout)
        await deliveries.poll_once()
        # Delivered while the slow instance's 12 queues hold 4 slots of 10, no more.
        await asyncio.wait_for(endpoint.fast.wait(), 10)
        assert endpoint.waiting == 4
        endpoint.gate.set()
        await settle(deliveries)
    got = await world.rpc("webhooks.deliveries", {"webhookId": made["id"]})
    assert [a["outcome"] for a in got["attempts"]] == ["delivered"]


@pytest.fixture
async def silent_dns() -> AsyncIterator[str]:
    """A name server that reads every query and answers none."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def test_a_name_whose_servers_never_answer_ends_its_attempt_in_time(
    world: World, silent_dns: str
) -> None:
    ok = await world.rpc("webhooks.create", {"url": URL, "events": ["machine.ready"]})
    stuck = []
    for n in range(3):  # its name changed since (the check at a create is the gateway's)
        hook = await world.rpc("webhooks.create", {"url": URL, "events": ["machine.ready"]})
        await world.store.redis.hset(world.store.keys.k_webhook(hook["id"]), "url",
                                     f"https://hooks{n}.never-answers.example/in")  # fmt: skip
        stuck.append(hook["id"])
    await world.ready_machine()
    settings = msgspec.structs.replace(world.settings, webhook_timeout_s=0.3,
                                       webhook_retry_steps_s="60")  # fmt: skip
    async with NameLookups([silent_dns]) as lookups:
        deliveries = Deliveries(world.store, settings, world.box, Rules(frozenset()), lookups,
                                Endpoint())  # fmt: skip
        async with deliveries:
            await fan_out(world, Fanout(world.store, world.bus, settings, deliveries))
            await asyncio.wait_for(deliveries.idle(), 10)
    (delivered,) = (await world.rpc("webhooks.deliveries", {"webhookId": ok["id"]}))["attempts"]
    assert delivered["outcome"] == "delivered"
    for w in stuck:
        (attempt,) = (await world.rpc("webhooks.deliveries", {"webhookId": w}))["attempts"]
        assert (attempt["outcome"], attempt["error"]) == ("retrying", "no answer within 0.3 s")


async def test_a_create_whose_name_never_resolves_is_answered_in_time(
    world: World, silent_dns: str
) -> None:
    i = (await world.instance()).id
    settings = msgspec.structs.replace(world.settings, webhook_timeout_s=0.3)
    params = CreateWebhookParams(instance_id=i, url="https://hooks.never-answers.example/",
                                 events=["*"])  # fmt: skip
    async with NameLookups([silent_dns]) as lookups:
        ops = WebhookOps(store=world.store, box=world.box, access=world.api.access,
                         settings=settings, resolve=lookups)  # fmt: skip
        with pytest.raises(InvalidParams, match=r"did not resolve within 0\.3 s"):
            await ops.webhooks_create(params, ADMIN)


async def test_of_a_private_destination_only_the_status_is_kept(world: World) -> None:
    """``FLEET_WEBHOOK_ALLOW_PRIVATE`` opens a network to every tenant's webhooks: what its
    servers answer, or why a connection failed, is no tenant's to read."""
    public = await world.rpc("webhooks.create", {"url": URL, "events": ["machine.ready"]})
    private = await world.rpc("webhooks.create", {"url": URL, "events": ["machine.ready"]})
    await world.store.redis.hset(world.store.keys.k_webhook(private["id"]), "url",
                                 "http://10.1.2.3:5432/in")  # fmt: skip
    await world.ready_machine()

    async def answer(target: Target, headers: dict[str, str], body: bytes) -> Answer:
        return Answer(400, None, "FATAL: password authentication failed for user postgres")

    rules = Rules(frozenset(), Settings(webhook_allow_private="10.0.0.0/8").webhook_allowances)
    async with Deliveries(world.store, world.settings, world.box, rules, NameLookups(),
                          answer) as deliveries:  # fmt: skip
        await fan_out(world, Fanout(world.store, world.bus, world.settings, deliveries))
        await asyncio.wait_for(deliveries.idle(), 10)
    (kept,) = (await world.rpc("webhooks.deliveries", {"webhookId": public["id"]}))["attempts"]
    assert kept["error"].startswith("HTTP 400: FATAL")
    (hidden,) = (await world.rpc("webhooks.deliveries", {"webhookId": private["id"]}))["attempts"]
    assert (hidden["status"], hidden["error"]) == (400, "HTTP 400")


async def owner_token(world: World, email: str) -> tuple[str, str, Caller]:
    """An instance, an owner of it, and a token of theirs (its id and its caller)."""
    i = (await world.instance(email)).id
    await world.rpc("users.create", {"email": email})
    await world.rpc("instances.setMember", {"instanceId": i, "user": email, "role": "owner"})
    user = await user_caller(world.store, "s-test",
                             await find_user(world.store, email))  # fmt: skip
    made = await world.rpc("tokens.create", {"name": "hooks"}, user)
    caller = await current_caller(world.store, made["id"])
    assert caller is not None
    return i, made["id"], caller


@method("webhooks.create", "tokens.revoke", "instances.setMember")
async def test_an_endpoint_ends_with_its_makers_token_or_membership(world: World) -> None:
    i, token_id, caller = await owner_token(world, "owner@example.com")
    by_token = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]},
                               caller)  # fmt: skip
    j, _, other = await owner_token(world, "removed@example.com")
    by_member = await world.rpc("webhooks.create", {"instanceId": j, "url": URL,
                                                    "events": ["*"]}, other)  # fmt: skip
    by_admin = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    makers = WebhookMakers(world.store, 60.0)
    assert await makers.tick() == []  # every maker stands
    await world.rpc("tokens.revoke", {"id": token_id})
    await world.rpc("instances.setMember", {"instanceId": j, "user": "removed@example.com",
                                            "role": "none"})  # fmt: skip
    assert sorted(await makers.tick()) == sorted([by_token["id"], by_member["id"]])
    listed = {h["id"]: h for h in (await world.rpc("webhooks.list", {"instanceId": i}))[
        "webhooks"]}  # fmt: skip
    assert "no longer stands" in listed[by_token["id"]]["disabledReason"]
    assert listed[by_admin["id"]]["disabled"] is False
    (moved,) = (await world.rpc("webhooks.list", {"instanceId": j}))["webhooks"]
    assert f"no longer manages instance {j}" in moved["disabledReason"]
    assert await makers.tick() == []  # disabled once
