"""Webhooks against a tenant who fills them, on the real servers (the rules themselves:
tests/fast/test_webhooks_bounds.py): 2,000 ``webhooks.test`` in batches of 100 at an endpoint
that accepts and never answers are refused past the token's budget, and an admin's, which no
budget limits, leave at most the endpoint's bound waiting; an instance whose 20 endpoints are
flooded with 64 KiB events holds at most its ceiling in Redis, measured by Redis itself
(``MEMORY USAGE`` of every key its endpoints have)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from contracts.bus.events import encode_event
from contracts.errors import RateLimited
from contracts.gateway.webhooks import MAX_WEBHOOKS
from controlplane.process.stage import connect
from controlplane.settings import Settings
from controlplane.store import QueueBound, Store, StoredWebhook
from tests.fast.test_webhooks_bounds import flood
from tests.integration.test_webhooks import allowing, webhooks_stack
from tests.webhook_receiver import Receiver, receiver

#: What an instance's 20 endpoints may hold in Redis in all, each at its default bound
#: (1 MiB of bodies) with what Redis keeps beside them (docs/webhooks.md).
INSTANCE_CEILING = 24 * 1024 * 1024


@pytest.fixture
async def silent() -> AsyncIterator[Receiver]:
    """A receiver that accepts every request and answers none."""
    async with receiver() as r:
        r.open.clear()
        yield r


async def batches(url: str, token: str, webhook_id: str, n: int) -> list[dict[str, Any]]:
    """``n`` batches of 100 ``webhooks.test`` calls; every answer."""
    out: list[dict[str, Any]] = []
    body = [{"jsonrpc": "2.0", "id": k, "method": "webhooks.test",
             "params": {"webhookId": webhook_id}} for k in range(100)]  # fmt: skip
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(n):
            async with http.post(f"{url}/rpc", json=body) as answer:
                out += await answer.json()
    return out


async def test_2000_tests_at_a_silent_endpoint_are_refused_past_the_budget_or_bounded(
    settings: Settings, silent: Receiver
) -> None:
    s = allowing(settings)
    async with webhooks_stack(settings) as client:
        inst = await client.create_instance("flood")
        hook = await client.webhooks_create(silent.url, ["*"], instance_id=inst.id)
        member = await client.create_token("member", inst.id, scopes=["admin"])
        got = await batches(client.url, member.token, hook.id, 20)
        refused = [a for a in got if a.get("error", {}).get("code") == RateLimited.code]
        assert len(got) - len(refused) == s.rate_webhook_test_per_min
        assert len(refused) == 2000 - s.rate_webhook_test_per_min
        await batches(client.url, s.admin_token, hook.id, 20)  # no budget: the bound
        waiting = await client.webhooks_deliveries(hook.id)
        queued = 2000 + s.rate_webhook_test_per_min
        assert waiting.pending == s.webhook_queue_max_events
        assert waiting.dropped == queued - s.webhook_queue_max_events
        await silent.until(lambda got: len(got) >= 1)  # the head was sent, and is held


async def redis_bytes(store: Store, webhook_ids: list[str]) -> int:
    """What Redis holds for these endpoints: every key of theirs, as MEMORY USAGE says."""
    total = 0
    for w in webhook_ids:
        async for key in store.redis.scan_iter(match=store.keys.k_webhook(w) + "*"):
            total += int(await store.redis.memory_usage(key, samples=0) or 0)
    return total


async def test_an_instances_endpoints_flooded_with_big_events_hold_at_most_its_ceiling(
    settings: Settings,
) -> None:
    async with AsyncExitStack() as es:
        store, _ = await connect(settings, es, "webhooks-ceiling")
        inst = await store.create_instance("ceiling")
        ids = [await make_endpoint(store, inst.id, n) for n in range(MAX_WEBHOOKS)]
        bound = QueueBound.of(settings)
        for seq, event in enumerate(flood("m-0123456789abcdef", 40, 64 * 1024 - 512), 1):
            await store.webhooks.enqueue([(w, False) for w in ids], queue=event.machine_id,
                                         seq=seq, event_id=event.event_id, now_ms=seq,
                                         body=encode_event(event), bound=bound)  # fmt: skip
        held = await redis_bytes(store, ids)
        assert 20 * bound.bytes * 0.9 < held <= INSTANCE_CEILING, held


async def make_endpoint(store: Store, instance_id: str, n: int) -> str:
    """An endpoint of the instance, as webhooks.create stores it."""
    hook = StoredWebhook(id=f"w-{n:016x}", instance_id=instance_id,
                         url=f"https://93.184.215.14/{n}", events=["*"], description="",
                         created_at=datetime.now(UTC), sealed_secret="sealed")  # fmt: skip
    await store.webhooks.create(hook, MAX_WEBHOOKS)
    return hook.id
