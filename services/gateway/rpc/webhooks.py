"""The gateway's ``webhooks.*`` methods: endpoints that machine events are POSTed to
(``contracts/gateway/webhooks.py``; the deliveries are the webhooks service's).

An instance's owner (``admin`` on it) manages its endpoints, a platform admin the platform's.
A URL is refused here when it may not be sent to (``controlplane/policy/webhook_rules.py``), for a
clear answer; the webhooks service checks it again at every delivery. The signing secret is sealed
as it is made and answered once; the gateway itself never sends a webhook.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import msgspec

from contracts.errors import InvalidParams, NotFound
from contracts.gateway import webhook_signature
from contracts.gateway.webhooks import (
    MAX_WEBHOOKS,
    TEST_TYPE,
    WEBHOOKS_CREATE,
    WEBHOOKS_DELETE,
    WEBHOOKS_DELIVERIES,
    WEBHOOKS_LIST,
    WEBHOOKS_ROTATE_SECRET,
    WEBHOOKS_TEST,
    CreatedWebhook,
    CreateWebhookParams,
    Deliveries,
    DeliveriesParams,
    RotatedSecret,
    WebhookDeleted,
    WebhookList,
    WebhookListParams,
    WebhookRef,
    WebhookTestSent,
)
from contracts.ids import new_event_id, new_webhook_id
from contracts.rpc.jsonrpc import handles
from controlplane.host_addresses import platform_rules
from controlplane.policy import Refused, Resolve, Rules, check
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import NO_MACHINE, QueueBound, Store, StoredWebhook, TooManyWebhooks
from services.gateway.auth import Access, Caller

#: How long the secret before a rotation signs beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)


class WebhookOps:
    def __init__(
        self, *, store: Store, box: SecretBox, access: Access, settings: Settings,
        resolve: Resolve,
    ) -> None:  # fmt: skip
        self._records = store.webhooks
        self._box = box
        self._access = access
        self._settings = settings
        self._resolve = resolve
        #: The platform's addresses, looked up at the first ``webhooks.create`` (not at start:
        #: most gateways never make an endpoint).
        self._rules: asyncio.Task[Rules] | None = None

    @handles(WEBHOOKS_CREATE)
    async def webhooks_create(self, p: CreateWebhookParams, c: Caller) -> CreatedWebhook:
        await self._access.instance_exists(c, p.instance_id)
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_s):
                await check(p.url, await self._platform(), self._resolve)
        except Refused as exc:
            raise InvalidParams(f"a webhook may not be sent there: {exc}", field="$.url") from None
        except TimeoutError:
            raise InvalidParams(f"a webhook may not be sent there: its name did not resolve "
                                f"within {self._settings.webhook_timeout_s:g} s",
                                field="$.url") from None  # fmt: skip
        secret = webhook_signature.new_secret()
        hook = StoredWebhook(
            id=new_webhook_id(), instance_id=p.instance_id, url=p.url, events=p.events,
            description=p.description, created_at=datetime.now(UTC).replace(microsecond=0),
            sealed_secret=self._box.encrypt(secret), made_by=c.token_id, made_by_user=c.user_id,
        )  # fmt: skip
        try:
            await self._records.create(hook, MAX_WEBHOOKS)
        except TooManyWebhooks:
            where = f"instance {p.instance_id}" if p.instance_id else "the platform"
            raise InvalidParams(f"{where} has {MAX_WEBHOOKS} webhooks, the most it may: "
                                "delete one first", field="$.url") from None  # fmt: skip
        return CreatedWebhook(**msgspec.structs.asdict(hook.info()), secret=secret)

    @handles(WEBHOOKS_LIST)
    async def webhooks_list(self, p: WebhookListParams, c: Caller) -> WebhookList:
        await self._access.instance_exists(c, p.instance_id)
        return WebhookList(webhooks=[h.info() for h in await self._records.of(p.instance_id)])

    @handles(WEBHOOKS_DELETE)
    async def webhooks_delete(self, p: WebhookRef, c: Caller) -> WebhookDeleted:
        hook = await self._hook(p.webhook_id, c)
        return WebhookDeleted(deleted=await self._records.delete(hook))

    @handles(WEBHOOKS_ROTATE_SECRET)
    async def webhooks_rotate_secret(self, p: WebhookRef, c: Caller) -> RotatedSecret:
        hook = await self._hook(p.webhook_id, c)
        secret = webhook_signature.new_secret()
        until = datetime.now(UTC).replace(microsecond=0) + ROTATION_OVERLAP
        await self._records.rotate(hook.id, self._box.encrypt(secret), hook.sealed_secret,
                                   until.timestamp())  # fmt: skip
        return RotatedSecret(webhook_id=hook.id, secret=secret, previous_secret_until=until)

    @handles(WEBHOOKS_TEST)
    async def webhooks_test(self, p: WebhookRef, c: Caller) -> WebhookTestSent:
        hook = await self._hook(p.webhook_id, c)
        event_id = new_event_id()
        now = datetime.now(UTC)
        data = msgspec.json.encode({"webhookId": hook.id, "instanceId": hook.instance_id,
                                    "url": hook.url})  # fmt: skip
        stamp = msgspec.json.encode(now)[1:-1].decode()
        now_us = time.time_ns() // 1000
        # Ordered by the microsecond they were made: a burst of tests keeps its order.
        await self._records.enqueue([(hook.id, False)], queue=NO_MACHINE, seq=now_us,
                                    event_id=event_id, now_ms=now_us // 1000,
                                    body=webhook_signature.body(TEST_TYPE, stamp, data),
                                    bound=QueueBound.of(self._settings))  # fmt: skip
        return WebhookTestSent(event_id=event_id)

    @handles(WEBHOOKS_DELIVERIES)
    async def webhooks_deliveries(self, p: DeliveriesParams, c: Caller) -> Deliveries:
        hook = await self._hook(p.webhook_id, c)
        return Deliveries(webhook_id=hook.id,
                          attempts=await self._records.attempts(hook.id, p.limit),
                          pending=await self._records.pending(hook.id),
                          dropped=await self._records.dropped(hook.id))  # fmt: skip

    async def _hook(self, webhook_id: str, c: Caller) -> StoredWebhook:
        hook = await self._records.get(webhook_id)
        if hook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        c.require(hook.instance_id)
        return hook

    async def _platform(self) -> Rules:
        if self._rules is None:
            self._rules = asyncio.ensure_future(platform_rules(self._settings))
        try:
            return await asyncio.shield(self._rules)
        except Exception:
            self._rules = None  # asked again by the next call
            raise
