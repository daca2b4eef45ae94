"""Webhooks in memory: the ``webhooks.*`` methods through the dispatcher (the secret answered
once and kept sealed, the cap, who manages which endpoints, the URL's check), and the webhooks
service's own parts on the same store: the fan-out queues a machine's events for the endpoints
that want them, the deliveries send them in order per machine, signed, retried with the same
id, one queue held by one process at a time. (Who may call them: tests/fast/test_rights_table.py;
on the real servers: tests/integration/test_webhooks.py.)"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import pytest
from standardwebhooks import Webhook

from contracts.bus.events import encode_event, subject_of
from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.webhooks import MAX_WEBHOOKS
from controlplane.policy import NameLookups, Rules, Target
from controlplane.settings import Settings
from services.gateway.auth import Caller
from services.webhooks.deliver import Deliveries
from services.webhooks.fanout import Fanout
from services.webhooks.post import Answer
from tests.fast.conftest import World

method = pytest.mark.gateway_method
URL = "https://93.184.215.14/hooks/fleet"  # a public address: nothing resolves it
OWNER = "u-owner0000000000"


def owner_of(instance_id: str) -> Caller:
    return Caller("s-owner", admin=False, user_id=OWNER, role="member",
                  roles={instance_id: "owner"})  # fmt: skip


@method("webhooks.create", "webhooks.list", "webhooks.rotateSecret")
async def test_the_secret_is_answered_once_and_kept_sealed(world: World) -> None:
    i = (await world.instance()).id
    made = await world.rpc(
        "webhooks.create",
        {"instanceId": i, "url": URL, "events": ["machine.ready"], "description": "ci"},
    )
    assert made["secret"].startswith("whsec_")
    assert made["id"].startswith("w-")
    assert made["instanceId"] == i
    assert made["events"] == ["machine.ready"]
    (listed,) = (await world.rpc("webhooks.list", {"instanceId": i}))["webhooks"]
    assert "secret" not in listed
    assert listed["url"] == URL
    assert listed["disabled"] is False
    key = world.store.keys.k_webhook(made["id"])
    stored = cast(dict[str, str], await world.store.redis.hgetall(key))
    assert made["secret"] not in json.dumps(stored)  # sealed at rest
    assert world.box.decrypt(stored["secret"]) == made["secret"]

    rotated = await world.rpc("webhooks.rotateSecret", {"webhookId": made["id"]})
    assert rotated["secret"] != made["secret"]
    assert rotated["secret"].startswith("whsec_")
    hook = await world.store.webhooks.get(made["id"])
    assert hook is not None
    assert hook.previous_sealed == stored["secret"]
    (listed,) = (await world.rpc("webhooks.list", {"instanceId": i}))["webhooks"]
    assert listed["previousSecretUntil"] == rotated["previousSecretUntil"]


@method("webhooks.create", "webhooks.delete")
async def test_an_instance_holds_at_most_twenty_and_a_delete_makes_room(world: World) -> None:
    i = (await world.instance()).id
    made = [
        await world.rpc("webhooks.create", {"instanceId": i, "url": f"{URL}/{n}", "events": ["*"]})
        for n in range(MAX_WEBHOOKS)
    ]
    with pytest.raises(InvalidParams, match="20 webhooks"):
        await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    other = (await world.instance("other")).id  # the cap is per instance
    await world.rpc("webhooks.create", {"instanceId": other, "url": URL, "events": ["*"]})
    assert (await world.rpc("webhooks.delete", {"webhookId": made[0]["id"]}))["deleted"]
    await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    with pytest.raises(NotFound):
        await world.rpc("webhooks.delete", {"webhookId": made[0]["id"]})


@method("webhooks.create", "webhooks.list", "webhooks.delete", "webhooks.deliveries")
async def test_an_owner_manages_its_instances_endpoints_and_an_admin_the_platforms(
    world: World,
) -> None:
    i, j = (await world.instance()).id, (await world.instance("j")).id
    owner = owner_of(i)
    mine = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]},
                           owner)  # fmt: skip
    theirs = await world.rpc("webhooks.create", {"instanceId": j, "url": URL, "events": ["*"]})
    platform = await world.rpc("webhooks.create", {"url": URL, "events": ["*"]})
    assert platform["instanceId"] is None
    for params in ({"url": URL, "events": ["*"]}, {"instanceId": j, "url": URL, "events": ["*"]}):
        with pytest.raises(Forbidden):
            await world.rpc("webhooks.create", params, owner)
    for other in (theirs, platform):
        for m in ("webhooks.delete", "webhooks.deliveries", "webhooks.test"):
            with pytest.raises(Forbidden):
                await world.rpc(m, {"webhookId": other["id"]}, owner)
    with pytest.raises(Forbidden):
        await world.rpc("webhooks.list", {}, owner)
    listed = await world.rpc("webhooks.list", {"instanceId": i}, owner)
    assert [h["id"] for h in listed["webhooks"]] == [mine["id"]]
    assert [h["id"] for h in (await world.rpc("webhooks.list", {}))["webhooks"]] == [
        platform["id"]]  # fmt: skip


@method("webhooks.create")
async def test_a_url_is_checked_before_an_endpoint_is_made(world: World) -> None:
    i = (await world.instance()).id
    home = "loopback|platform"  # the host's own: both
    for url, why in (
        ("http://127.0.0.1:8080/x", home),
        ("http://[::1]/", home),
        ("http://169.254.169.254/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("ftp://93.184.215.14/", "https://"),
        ("https://a:b@93.184.215.14/", "user"),
    ):
        with pytest.raises(InvalidParams, match=why) as refused:
            await world.rpc("webhooks.create", {"instanceId": i, "url": url, "events": ["*"]})
        assert refused.value.data == {"field": "$.url"}
    with pytest.raises(InvalidParams, match="no event type"):
        await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["ready"]})
    assert (await world.rpc("webhooks.list", {"instanceId": i}))["webhooks"] == []


# --- the webhooks service's parts ---------------------------------------------------------------


@dataclass
class Endpoint:
    """A fake endpoint: what it was sent, and what it answers (in turn, then 200)."""

    sent: list[tuple[Target, dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    #: Only the first event sent is answered ``answers`` (the others: 200).
    first_only: bool = False

    async def __call__(self, target: Target, headers: dict[str, str], body: bytes) -> Answer:
        self.sent.append((target, headers, body))
        if self.first_only and headers["webhook-id"] != self.sent[0][1]["webhook-id"]:
            return Answer(200, None, "")
        return Answer(self.answers.pop(0) if self.answers else 200, None, "")

    def types(self, machine_id: str | None = None) -> list[str]:
        out = []
        for _, _, body in self.sent:
            payload = json.loads(body)
            if machine_id is None or payload["data"].get("machineId") == machine_id:
                out.append(payload["type"])
        return out


@asynccontextmanager
async def service(world: World, endpoint: Endpoint, **changes: Any
                  ) -> AsyncIterator[tuple[Fanout, Deliveries]]:  # fmt: skip
    """The webhooks service's fan-out and deliveries on the world's store (its poll not
    started: ``settle`` runs it), sending to ``endpoint``."""
    settings = msgspec.structs.replace(world.settings, **changes)
    deliveries = Deliveries(world.store, settings, world.box, Rules(frozenset()), NameLookups(),
                            endpoint)  # fmt: skip
    try:
        yield Fanout(world.store, world.bus, settings, deliveries), deliveries
    finally:
        await deliveries.__aexit__(None, None, None)


async def fan_out(world: World, fanout: Fanout, start: int = 0) -> None:
    """The bus's events from ``start`` on, as the stream would hand them over (seq from 1)."""
    for seq, event in enumerate(world.bus.events[start:], start + 1):
        if hasattr(event, "machine_id"):
            await fanout.queue(encode_event(event), subject_of(event), seq)


async def settle(deliveries: Deliveries, rounds: int = 50) -> None:
    """Until no queue is worked and none is due (a retry's wait is 0 in these settings)."""
    for _ in range(rounds):
        await asyncio.wait_for(deliveries.idle(), 10)
        await deliveries.poll_once()
        if not deliveries.busy:
            return
    raise AssertionError("the deliveries never settled")


async def test_a_machines_events_go_in_order_to_the_endpoints_that_want_them(
    world: World,
) -> None:
    i = (await world.instance()).id
    everything = await world.rpc("webhooks.create", {"instanceId": i, "url": URL,
                                                     "events": ["*"]})  # fmt: skip
    ready = await world.rpc("webhooks.create", {"instanceId": i, "url": URL + "/ready",
                                                "events": ["machine.ready"]})  # fmt: skip
    platform = await world.rpc("webhooks.create", {"url": URL + "/platform", "events": ["*"]})
    secrets = {"/hooks/fleet": everything["secret"], "/hooks/fleet/ready": ready["secret"],
               "/hooks/fleet/platform": platform["secret"]}  # fmt: skip
    machine = await world.ready_machine(i)
    other = await world.ready_machine()  # another instance's: only the platform's sees it
    endpoint = Endpoint()
    async with service(world, endpoint) as (fanout, deliveries):
        await fan_out(world, fanout)
        await settle(deliveries)

    kinds = ["machine." + k.value for k in world.bus.kinds(machine.id)]
    by_url: dict[str, list[str]] = {}
    for target, headers, body in endpoint.sent:  # each signed with its endpoint's secret
        payload = Webhook(secrets[target.path]).verify(body, headers)
        if payload["data"].get("machineId") == machine.id:
            by_url.setdefault(target.path, []).append(payload["type"])
    assert by_url["/hooks/fleet"] == kinds  # every event, in stream order
    assert by_url["/hooks/fleet/ready"] == ["machine.ready"]
    assert by_url["/hooks/fleet/platform"] == kinds
    platform_saw = {json.loads(b)["data"]["machineId"] for t, _, b in endpoint.sent
                    if t.path.endswith("platform")}  # fmt: skip
    instance_saw = {json.loads(b)["data"]["machineId"] for t, _, b in endpoint.sent
                    if not t.path.endswith("platform")}  # fmt: skip
    assert platform_saw == {machine.id, other.id}
    assert instance_saw == {machine.id}
    attempts = await world.rpc("webhooks.deliveries", {"webhookId": everything["id"]})
    assert attempts["pending"] == 0
    assert len(attempts["attempts"]) == len(kinds)


async def test_a_failing_head_holds_its_machines_queue_and_comes_again_with_its_id(
    world: World,
) -> None:
    await world.rpc("webhooks.create", {"url": URL, "events": ["*"]})  # the platform's
    first, second = await world.ready_machine(), await world.ready_machine()
    endpoint = Endpoint(answers=[500, 503], first_only=True)
    async with service(world, endpoint, webhook_retry_steps_s="0") as (fanout, deliveries):
        await fan_out(world, fanout)
        await settle(deliveries)
    ids = [h["webhook-id"] for _, h, _ in endpoint.sent]
    failed = ids[0]
    assert ids.count(failed) == 3  # twice refused, then taken
    for machine in (first, second):  # each machine's events in order, each once delivered
        assert endpoint.types(machine.id)[-1] == "machine.ready"
        assert list(dict.fromkeys(endpoint.types(machine.id))) == [
            "machine." + k.value for k in dict.fromkeys(world.bus.kinds(machine.id))
        ]
    # The failing event's machine sent nothing else before it was delivered.
    failed_machine = json.loads(endpoint.sent[0][2])["data"]["machineId"]
    order = [(h["webhook-id"], json.loads(b)["data"]["machineId"]) for _, h, b in endpoint.sent]
    last_try = max(n for n, (eid, _) in enumerate(order) if eid == failed)
    assert all(eid == failed for eid, m in order[:last_try] if m == failed_machine)


async def test_an_event_handed_over_again_is_not_sent_again(world: World) -> None:
    i = (await world.instance()).id
    await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    await world.ready_machine(i)
    endpoint = Endpoint()
    async with service(world, endpoint) as (fanout, deliveries):
        await fan_out(world, fanout)
        await settle(deliveries)
        sent = len(endpoint.sent)
        await fan_out(world, fanout)  # the stream hands every one over again (acks lost)
        await settle(deliveries)
    assert len(endpoint.sent) == sent


@dataclass
class Hanging(Endpoint):
    """An endpoint that never answers: a delivery under way."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, target: Target, headers: dict[str, str], body: bytes) -> Answer:
        self.sent.append((target, headers, body))
        self.reached.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")


async def test_a_queue_is_held_by_one_process_until_its_lease_runs_out(world: World) -> None:
    i = (await world.instance()).id
    made = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    machine = await world.ready_machine(i)
    one = Hanging()
    async with service(world, one, webhook_timeout_s=0.05) as (fanout, first):
        await fan_out(world, fanout)  # claimed by `first` as it is queued, and under way
        await asyncio.wait_for(one.reached.wait(), 10)
        records, now = world.store.webhooks, int(time.time() * 1000)
        claim = functools.partial(records.claim, most_per_scope=8, held={})
        assert await claim(now, 1000, 10, "another") == []  # held...
        later = now + first.lease_ms + 1
        taken = await claim(later, 1000, 10, "another")  # ...until its lease runs out
        assert taken == [(f"{made['id']}|{machine.id}", i)]
        head = await records.head(taken[0][0], first.token, later, 1000)
        assert head == -1  # the first process finds its lease gone: it stops


async def test_410_disables_the_endpoint_and_drops_its_queue(world: World) -> None:
    i = (await world.instance()).id
    made = await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    await world.ready_machine(i)
    endpoint = Endpoint(answers=[410])
    async with service(world, endpoint) as (fanout, deliveries):
        await fan_out(world, fanout)
        await settle(deliveries)
    assert len(endpoint.sent) == 1  # nothing after the 410
    (listed,) = (await world.rpc("webhooks.list", {"instanceId": i}))["webhooks"]
    assert listed["disabled"] is True
    assert "410" in listed["disabledReason"]
    got = await world.rpc("webhooks.deliveries", {"webhookId": made["id"]})
    assert got["pending"] == 0
    assert got["attempts"][0]["outcome"] == "failed"


@method("webhooks.test", "webhooks.deliveries", "webhooks.delete")
async def test_a_test_event_is_sent_and_a_delete_leaves_nothing_behind(world: World) -> None:
    i = (await world.instance()).id
    made = await world.rpc("webhooks.create", {"instanceId": i, "url": URL,
                                               "events": ["machine.ready"]})  # fmt: skip
    sent = await world.rpc("webhooks.test", {"webhookId": made["id"]})
    assert (await world.rpc("webhooks.deliveries", {"webhookId": made["id"]}))["pending"] == 1
    endpoint = Endpoint()
    async with service(world, endpoint) as (_, deliveries):
        await settle(deliveries)
    ((_, headers, body),) = endpoint.sent
    payload = Webhook(made["secret"]).verify(body, headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhookId"] == made["id"]
    assert headers["webhook-id"] == sent["eventId"]
    (attempt,) = (await world.rpc("webhooks.deliveries", {"webhookId": made["id"]}))["attempts"]
    assert (attempt["outcome"], attempt["machineId"], attempt["type"]) == (
        "delivered", None, "webhook.test")  # fmt: skip

    await world.ready_machine(i)
    async with service(world, Endpoint(answers=[500])) as (fanout, deliveries):
        await fan_out(world, fanout)  # a ready event waits, retried later...
        await settle(deliveries)
    assert (await world.rpc("webhooks.delete", {"webhookId": made["id"]}))["deleted"]
    keys = [k async for k in world.store.redis.scan_iter(match=world.store.keys.pattern())]
    assert not await world.store.redis.exists(world.store.keys.K_WEBHOOKS_DUE)
    left = [k for k in keys if made["id"] in k]  # ...and goes with its endpoint: what stays
    assert all(":done:" in k for k in left), left  # is a queue's last sequence, for an hour
    assert all(0 < ttl <= 3600 for ttl in [await world.store.redis.ttl(k) for k in left])


def test_settings_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="FLEET_WEBHOOK_TIMEOUT_S"):
        Settings(webhook_timeout_s=0)


async def test_an_endpoint_made_while_the_fan_out_keeps_others_gets_the_next_event(
    world: World,
) -> None:
    i = (await world.instance()).id
    await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    machine = await world.ready_machine(i)
    endpoint = Endpoint()
    async with service(world, endpoint) as (fanout, deliveries):
        await fan_out(world, fanout)  # the fan-out now keeps the instance's one endpoint
        await settle(deliveries)
        later = await world.rpc("webhooks.create", {"url": URL + "/platform", "events": ["*"]})
        await world.rpc("webhooks.create", {"url": URL + "/none", "events": ["machine.lost"]})
        start = len(world.bus.events)
        await world.rpc("machines.stop", {"machineId": machine.id})
        await world.bus.settle()
        await fan_out(world, fanout, start)
        await settle(deliveries)
    stopped = [t.path for t, _, b in endpoint.sent if json.loads(b)["type"] == "machine.stopped"]
    assert sorted(stopped) == ["/hooks/fleet", "/hooks/fleet/platform"], stopped
    assert later["id"]


async def test_an_event_queued_while_its_queues_task_ends_is_sent_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of a queue its task has just found empty, made before that task ended: the
    task goes on with it (else it waits for its lease to run out: 35 s)."""
    i = (await world.instance()).id
    await world.rpc("webhooks.create", {"instanceId": i, "url": URL, "events": ["*"]})
    machine = await world.ready_machine(i)
    events = [(n, e) for n, e in enumerate(world.bus.events, 1)
              if getattr(e, "machine_id", None) == machine.id]  # fmt: skip
    endpoint = Endpoint()
    async with service(world, endpoint) as (fanout, deliveries):
        records = world.store.webhooks
        settle_one = records.settle
        later = iter(events[1:])

        async def settled_then_queued(*args: Any, **kw: Any) -> bool:
            more = await settle_one(*args, **kw)
            if (nxt := next(later, None)) is not None:  # queued before the task resumes
                await fanout.queue(encode_event(nxt[1]), subject_of(nxt[1]), nxt[0])
            return more

        monkeypatch.setattr(records, "settle", settled_then_queued)
        n, first = events[0]
        await fanout.queue(encode_event(first), subject_of(first), n)
        await asyncio.wait_for(deliveries.idle(), 10)
    assert [json.loads(b)["data"]["eventId"] for _, _, b in endpoint.sent] == [
        e.event_id for _, e in events]  # fmt: skip
