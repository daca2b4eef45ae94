"""Webhook endpoints and their delivery queues in Redis (``store.webhooks``;
``contracts/gateway/webhooks.py``, ``services/webhooks``, docs/webhooks.md).

An endpoint is a hash (its secret sealed by the platform's key, as machine tokens are) in the
set of its scope: its instance, or the platform. The events waiting for it are queued per
machine, by stream sequence, and delivered one at a time per queue, so that a machine's
events reach the endpoint in order; each step of a delivery is one script
(``controlplane/store/webhooks_scripts.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from contracts.gateway.webhooks import MAX_ATTEMPTS_KEPT, DeliveryAttempt, Webhook
from controlplane.store import webhooks_scripts as scripts
from controlplane.store.keys import F_MACHINE_INSTANCE
from controlplane.store.scripts import BoundScript

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.settings import Settings
    from controlplane.store.keys import Keys

#: The scope of the platform's endpoints (instance ids start with ``i-``).
PLATFORM: Final = "platform"
#: The queue of events of no machine (``webhook.test``).
NO_MACHINE: Final = "-"
#: Queues a trim empties at most before it gives up (the next enqueue trims again).
_TRIM_ROUNDS: Final = 64
#: The earliest due queues a claim looks at: past the ones of scopes at their most (a tenant
#: with many queues due), to those of others.
_CLAIM_LOOK: Final = 4096
_ATTEMPT = msgspec.json.Decoder(DeliveryAttempt)


class TooManyWebhooks(Exception):
    """The scope holds ``MAX_WEBHOOKS`` endpoints already."""


class StoredWebhook(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    instance_id: str | None
    url: str
    events: list[str]
    description: str
    created_at: datetime
    #: The signing secret (``whsec_...``), sealed by the platform's secret key.
    sealed_secret: str
    #: The secret before the last rotation, sealed, and until when (epoch s) it signs too.
    previous_sealed: str | None = None
    previous_until: float | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    #: Since when (epoch ms) every attempt failed; None: the last one succeeded.
    failing_since_ms: int | None = None
    #: Who made it: the token (or sign-in session) and its user. The endpoint stands while
    #: they may manage its scope (services/gateway/rpc/webhook_makers.py).
    made_by: str | None = None
    made_by_user: str | None = None

    def info(self) -> Webhook:
        return Webhook(
            id=self.id, instance_id=self.instance_id, url=self.url, events=self.events,
            description=self.description, created_at=self.created_at, disabled=self.disabled,
            disabled_reason=self.disabled_reason,
            failing_since=_at_ms(self.failing_since_ms) if self.failing_since_ms else None,
            previous_secret_until=(
                datetime.fromtimestamp(self.previous_until, UTC)
                if self.previous_until and self.previous_until > datetime.now(UTC).timestamp()
                else None),
        )  # fmt: skip

    def fields(self) -> list[str]:
        """The hash's fields and values, flat (``of_hash`` reads them back)."""
        return ["id", self.id, "instanceId", self.instance_id or "", "url", self.url,
               "events", json.dumps(self.events), "description", self.description,
               "createdAt", self.created_at.isoformat(), "secret", self.sealed_secret,
               "madeBy", self.made_by or "", "madeByUser", self.made_by_user or ""]  # fmt: skip

    @classmethod
    def of_hash(cls, h: dict[str, str]) -> StoredWebhook:
        return cls(
            id=h["id"], instance_id=h.get("instanceId") or None, url=h["url"],
            events=json.loads(h["events"]), description=h.get("description", ""),
            created_at=datetime.fromisoformat(h["createdAt"]), sealed_secret=h["secret"],
            previous_sealed=h.get("previousSecret") or None,
            previous_until=float(h["previousUntil"]) if h.get("previousUntil") else None,
            disabled=h.get("disabled") == "1", disabled_reason=h.get("disabledReason") or None,
            failing_since_ms=int(h["failingSince"]) if h.get("failingSince") else None,
            made_by=h.get("madeBy") or None, made_by_user=h.get("madeByUser") or None,
        )  # fmt: skip


@dataclass(frozen=True)
class Target:
    """An endpoint as the fan-out sees it."""

    id: str
    events: list[str]
    disabled: bool
    #: Its instance's id, or ``PLATFORM``.
    scope: str


@dataclass(frozen=True)
class QueueBound:
    """The most events, and bytes of their bodies, waiting for one endpoint."""

    events: int
    bytes: int

    @classmethod
    def of(cls, settings: Settings) -> QueueBound:
        return cls(settings.webhook_queue_max_events, settings.webhook_queue_max_bytes)


@dataclass(frozen=True)
class Head:
    """The event a claimed queue delivers next, and its endpoint as it is now."""

    event_id: str
    seq: int
    body: bytes
    #: Attempts that failed so far, and when the first was made (epoch ms; 0: none yet).
    failed: int
    first_at_ms: int
    hook: StoredWebhook


def member(webhook_id: str, queue: str) -> str:
    """A queue's name in the due set and the leases: ``<webhookId>|<queue>``."""
    return f"{webhook_id}|{queue}"


def parse_member(m: str) -> tuple[str, str]:
    webhook_id, _, queue = m.partition("|")
    return webhook_id, queue


class WebhookRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis: Any = redis
        self._k = keys
        self._enqueue = BoundScript(scripts.ENQUEUE)
        self._claim = BoundScript(scripts.CLAIM)
        self._head = BoundScript(scripts.HEAD)
        self._settle = BoundScript(scripts.SETTLE)
        self._drop = BoundScript(scripts.DROP)
        self._create = BoundScript(scripts.CREATE)
        self._targets = BoundScript(scripts.TARGETS)
        self._trim = BoundScript(scripts.TRIM)
        self._disable = BoundScript(scripts.DISABLE)

    def _scope(self, instance_id: str | None) -> str:
        return self._k.k_webhooks_of(instance_id or PLATFORM)

    # --- endpoints (the gateway's) -------------------------------------------------------------
    async def create(self, hook: StoredWebhook, most: int) -> None:
        """Add ``hook``; TooManyWebhooks when its scope holds ``most``."""
        keys = [self._scope(hook.instance_id), self._k.k_webhook(hook.id),
                self._k.K_WEBHOOKS_VERSION, self._k.K_WEBHOOKS_SCOPES]  # fmt: skip
        args = [most, hook.id, hook.instance_id or PLATFORM, *hook.fields()]
        done = await self._create.on(self._redis)(keys=keys, args=args)
        if not int(done):
            raise TooManyWebhooks(hook.instance_id or PLATFORM)

    async def get(self, webhook_id: str) -> StoredWebhook | None:
        h = cast(dict[str, str], await self._redis.hgetall(self._k.k_webhook(webhook_id)))
        return StoredWebhook.of_hash(h) if h.get("id") else None

    async def of(self, instance_id: str | None) -> list[StoredWebhook]:
        """The endpoints of an instance (None: the platform's), oldest first."""
        ids = sorted(cast(set[str], await self._redis.smembers(self._scope(instance_id))))
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(self._k.k_webhook(webhook_id))
            rows = cast(list[dict[str, str]], await pipe.execute())
        hooks = [StoredWebhook.of_hash(h) for h in rows if h.get("id")]
        return sorted(hooks, key=lambda h: h.created_at)

    async def delete(self, hook: StoredWebhook) -> bool:
        """The endpoint, its queues, their events and its attempts gone."""
        w = hook.id
        queues = sorted(cast(set[str], await self._redis.smembers(self._k.k_webhook_queues(w))))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k.k_webhook(w))
            pipe.srem(self._scope(hook.instance_id), w)
            pipe.hdel(self._k.K_WEBHOOKS_SCOPES, w)
            pipe.incr(self._k.K_WEBHOOKS_VERSION)
            pipe.delete(self._k.k_webhook_bodies(w), self._k.k_webhook_tries(w),
                        self._k.k_webhook_attempts(w), self._k.k_webhook_queues(w),
                        self._k.k_webhook_sizes(w),
                        *(self._k.k_webhook_queue(w, q) for q in queues))  # fmt: skip
            if queues:
                members = [member(w, q) for q in queues]
                pipe.zrem(self._k.K_WEBHOOKS_DUE, *members)
                pipe.hdel(self._k.K_WEBHOOKS_LEASES, *members)
            removed, *_ = await pipe.execute()
        return bool(removed)

    async def made(self) -> list[StoredWebhook]:
        """Every endpoint that is not disabled and whose maker is recorded."""
        ids = sorted(cast(dict[str, str], await self._redis.hgetall(self._k.K_WEBHOOKS_SCOPES)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(self._k.k_webhook(webhook_id))
            rows = cast(list[dict[str, str]], await pipe.execute())
        hooks = [StoredWebhook.of_hash(h) for h in rows if h.get("id")]
        return [h for h in hooks if h.made_by and not h.disabled]

    async def disable(self, webhook_id: str, reason: str) -> bool:
        """Nothing more sent to the endpoint (what waits for it is dropped by its deliveries);
        False when it is gone."""
        keys = [self._k.k_webhook(webhook_id), self._k.K_WEBHOOKS_VERSION]
        return bool(int(await self._disable.on(self._redis)(keys=keys, args=[reason])))

    async def rotate(self, webhook_id: str, sealed: str, previous: str, until: float) -> None:
        fields = {"secret": sealed, "previousSecret": previous, "previousUntil": repr(until)}
        await self._redis.hset(self._k.k_webhook(webhook_id), mapping=fields)

    async def attempts(self, webhook_id: str, limit: int) -> list[DeliveryAttempt]:
        raw = await self._redis.lrange(self._k.k_webhook_attempts(webhook_id), 0, limit - 1)
        return [_ATTEMPT.decode(r) for r in cast(list[str], raw)]

    async def pending(self, webhook_id: str) -> int:
        return int(await self._redis.hlen(self._k.k_webhook_bodies(webhook_id)))

    async def dropped(self, webhook_id: str) -> int:
        """Events dropped from the endpoint's queues past their bound."""
        return int(await self._redis.hget(self._k.k_webhook(webhook_id), "dropped") or 0)

    async def record_scopes(self) -> int:
        """Each endpoint's scope recorded where it is not (an endpoint made before scopes
        were): how many were recorded."""
        recorded = 0
        async for key in self._redis.scan_iter(match=self._k.k_webhooks_of("*"), count=500):
            scope = str(key).rpartition(":")[2]
            for w in cast(set[str], await self._redis.smembers(key)):
                recorded += int(await self._redis.hsetnx(self._k.K_WEBHOOKS_SCOPES, w, scope))
        return recorded

    # --- the fan-out's ---------------------------------------------------------------------------
    async def instance_of(self, machine_id: str) -> str | None:
        got = await self._redis.hget(self._k.k_machine(machine_id), F_MACHINE_INSTANCE)
        return cast(str | None, got) or None

    async def targets(self, instance_id: str | None) -> tuple[str, list[Target]]:
        """The endpoints of ``instance_id`` and of the platform (None: the platform's only),
        and the version they were read at (``enqueue`` checks it)."""
        keys = [self._k.K_WEBHOOKS_VERSION, self._scope(None)]
        keys += [self._scope(instance_id)] if instance_id else []
        version, *flat = cast(list[Any], await self._targets.on(self._redis)(
            keys=keys, args=[self._k.k_webhook("")]))  # fmt: skip
        scopes = {2: PLATFORM, 3: instance_id or PLATFORM}
        return str(version), [Target(flat[i], json.loads(flat[i + 1]), flat[i + 2] == "1",
                                     scopes[int(flat[i + 3])])
                              for i in range(0, len(flat), 4)]  # fmt: skip

    async def version(self) -> str:
        return cast(str | None, await self._redis.get(self._k.K_WEBHOOKS_VERSION)) or "0"

    async def enqueue(
        self, endpoints: Sequence[tuple[str, bool]], *, queue: str, seq: int, event_id: str,
        body: bytes, now_ms: int, bound: QueueBound, lease_ms: int = 0, token: str = "",
        version: str = "",
    ) -> dict[str, Head | None] | None:  # fmt: skip
        """Queue an event for each endpoint (its id, and whether the caller may claim its
        queue); the members claimed for ``token`` (none when ``lease_ms`` is 0: the queues
        are due at once, for whichever process takes them), each with its head when that is
        this event (None: an older one is). None, and nothing queued, when the endpoints
        changed since ``version`` ('': unchecked). An endpoint past ``bound`` is brought
        back under it (``trim``)."""
        keys = [self._k.K_WEBHOOKS_DUE, self._k.K_WEBHOOKS_LEASES, self._k.K_WEBHOOKS_VERSION]
        args: list[Any] = [now_ms, lease_ms, token, seq, event_id, body, queue, version,
                           bound.events, bound.bytes]  # fmt: skip
        for w, claim in endpoints:
            keys += [self._k.k_webhook(w), self._k.k_webhook_queue(w, queue),
                     self._k.k_webhook_queues(w), self._k.k_webhook_bodies(w),
                     self._k.k_webhook_done(w, queue), self._k.k_webhook_tries(w),
                     self._k.k_webhook_sizes(w)]  # fmt: skip
            args += [w, "1" if claim else "0"]
        got = await self._enqueue.on(self._redis)(keys=keys, args=args)
        if isinstance(got, str | bytes):  # stale
            return None
        claimed, over = got
        for w in over:
            await self.trim(str(w), bound)
        out: dict[str, Head | None] = {}
        for c in claimed:
            out[c[0]] = _head(event_id, seq, body, c[2], c[3]) if int(c[1]) else None
        return out

    async def trim(self, webhook_id: str, bound: QueueBound) -> None:
        """The endpoint brought back under ``bound``: the oldest events of its largest queue
        dropped (and counted), then the next largest's, until it is."""
        w = webhook_id
        sizes = self._k.k_webhook_sizes(w)
        for _ in range(_TRIM_ROUNDS):
            largest = cast(list[str], await self._redis.zrevrange(sizes, 0, 0))
            if not largest:
                return
            keys = [
                self._k.k_webhook(w),
                sizes,
                self._k.k_webhook_bodies(w),
                self._k.k_webhook_tries(w),
                self._k.k_webhook_queue(w, largest[0]),
            ]
            args = [largest[0], bound.events, bound.bytes]
            if int(await self._trim.on(self._redis)(keys=keys, args=args)) == 0:
                return

    # --- the deliveries' -------------------------------------------------------------------------
    async def claim(
        self, now_ms: int, lease_ms: int, limit: int, token: str, *, most_per_scope: int,
        held: Mapping[str, int],
    ) -> list[tuple[str, str]]:  # fmt: skip
        """The due queues claimed for ``token`` (each with its endpoint's scope), the earliest
        first, up to ``limit``, and of one scope no more than ``most_per_scope`` with what
        the caller ``held`` already."""
        keys = [self._k.K_WEBHOOKS_DUE, self._k.K_WEBHOOKS_LEASES, self._k.K_WEBHOOKS_SCOPES]
        args: list[Any] = [now_ms, lease_ms, limit, token, most_per_scope, _CLAIM_LOOK]
        for scope, n in held.items():
            args += [scope, n]
        flat = cast(list[str], await self._claim.on(self._redis)(keys=keys, args=args))
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    async def next_due_ms(self) -> int | None:
        first = await self._redis.zrange(self._k.K_WEBHOOKS_DUE, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def head(self, m: str, token: str, now_ms: int, lease_ms: int) -> Head | int:
        """The queue's next event (its lease renewed), or -1 (the lease is another's), -2
        (the endpoint is gone), 0 (empty: released)."""
        w, q = parse_member(m)
        keys = [self._k.K_WEBHOOKS_DUE, self._k.K_WEBHOOKS_LEASES, self._k.k_webhook_queue(w, q),
                self._k.k_webhook_bodies(w), self._k.k_webhook_tries(w), self._k.k_webhook(w),
                self._k.k_webhook_queues(w), self._k.k_webhook_sizes(w)]  # fmt: skip
        got = await self._head.on(self._redis)(keys=keys, args=[m, token, now_ms, lease_ms, q])
        if int(got[0]) != 1:
            return int(got[0])
        _, event_id, seq, body, tries, flat = got
        return _head(event_id, int(float(seq)), str(body).encode(), tries, flat)

    async def settle(
        self, m: str, token: str, head: Head, attempt: DeliveryAttempt, *, now_ms: int,
        lease_ms: int, next_due_ms: int | None, disable: str = "",
    ) -> bool:  # fmt: skip
        """Record ``attempt``; the event leaves the queue unless ``next_due_ms`` says when the
        next attempt is. Whether the queue holds more and is still the caller's."""
        w, q = parse_member(m)
        keys = [self._k.K_WEBHOOKS_DUE, self._k.K_WEBHOOKS_LEASES, self._k.k_webhook_queue(w, q),
                self._k.k_webhook_bodies(w), self._k.k_webhook_tries(w),
                self._k.k_webhook_queues(w), self._k.k_webhook_attempts(w), self._k.k_webhook(w),
                self._k.k_webhook_done(w, q), self._k.K_WEBHOOKS_VERSION,
                self._k.k_webhook_sizes(w)]  # fmt: skip
        first = head.first_at_ms or now_ms
        args = [m, token, now_ms, lease_ms, q, head.event_id, head.seq,
                msgspec.json.encode(attempt), MAX_ATTEMPTS_KEPT,
                "retry" if next_due_ms is not None else "done", next_due_ms or 0,
                f"{attempt.attempt},{first}", disable,
                "clear" if attempt.outcome == "delivered" else "mark"]  # fmt: skip
        return bool(int(await self._settle.on(self._redis)(keys=keys, args=args)))

    async def drop(self, m: str) -> int:
        """A queue dropped whole: its endpoint is gone or disabled. How many events it held."""
        w, q = parse_member(m)
        keys = [self._k.K_WEBHOOKS_DUE, self._k.K_WEBHOOKS_LEASES, self._k.k_webhook_queue(w, q),
                self._k.k_webhook_bodies(w), self._k.k_webhook_tries(w),
                self._k.k_webhook_queues(w), self._k.k_webhook_sizes(w),
                self._k.k_webhook(w)]  # fmt: skip
        return int(await self._drop.on(self._redis)(keys=keys, args=[m, q]))


def _head(event_id: str, seq: int, body: bytes, tries: str, flat: list[str]) -> Head:
    failed, _, first = str(tries).partition(",")
    hook = StoredWebhook.of_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
    return Head(event_id=event_id, seq=seq, body=body, failed=int(failed or 0),
                first_at_ms=int(first or 0), hook=hook)  # fmt: skip


def _at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
