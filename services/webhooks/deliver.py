"""Deliveries: the queues this process holds, each worked by one task that POSTs its events one
at a time, lowest stream sequence first, until the queue is empty or its head must wait.

A queue comes to this process in two ways: the fan-out queued an event that made it due and
claimed it at once (``start``), or the poll found it due (its next attempt's time has come, or
the process that held it died and its lease ran out). The lease is renewed at each attempt
and outlasts one (twice the timeout); a task that finds its lease taken stops, and whatever it
was sending is sent again by the new holder: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType

import msgspec
import structlog

from base.clock import SYSTEM_CLOCK, sleep_or_event
from base.tasks import OwnedTasks, cancel_and_join
from contracts.gateway import webhook_signature
from contracts.gateway.webhooks import DeliveryAttempt
from controlplane.policy import Refused, Resolve, Rules, Target, check
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import NO_MACHINE, Head, Store, StoredWebhook, parse_member
from services.webhooks.post import Answer, Connections, PostFailed, post
from services.webhooks.rules import judge

log = structlog.get_logger(__name__)

#: How often the due queues are looked for when nothing wakes the poll sooner.
POLL_S = 1.0
#: ``await send(target, headers, body)``: the endpoint's answer (PostFailed: none).
Send = Callable[[Target, dict[str, str], bytes], Awaitable[Answer]]


class _Type(msgspec.Struct):
    type: str


_TYPE = msgspec.json.Decoder(_Type)


class Deliveries:
    """Async context manager: the poll and the queues' tasks of one process."""

    def __init__(
        self, store: Store, settings: Settings, box: SecretBox, rules: Rules, resolve: Resolve,
        send: Send | None = None,
    ) -> None:  # fmt: skip
        self._records = store.webhooks
        self._settings = settings
        self._box = box
        self._rules = rules
        self._resolve = resolve
        self._tls = ssl.create_default_context()
        #: Connections endpoints keep open, by checked address.
        self._connections = Connections()
        self._send = send or self._post
        #: This process's leases carry it: a queue it holds is not taken from it by itself.
        self.token = secrets.token_hex(8)
        #: Long enough for one attempt (connect, send, answer) and the steps around it.
        self.lease_ms = int(2000 * settings.webhook_timeout_s) + 5000
        #: The queues worked on, each with its endpoint's scope, and how many of each scope.
        self._active: dict[str, str] = {}
        self._held: Counter[str] = Counter()
        #: Queues claimed again while their task was ending (it had found them empty): the
        #: task goes on with them (their head, when the claim read it).
        self._again: dict[str, Head | None] = {}
        self._tasks = OwnedTasks("webhooks", drain_s=settings.webhook_timeout_s,
                                 failed_event="webhooks.queue_failed")  # fmt: skip
        self._wake = asyncio.Event()
        #: Set while no queue is worked on.
        self._idle = asyncio.Event()
        self._idle.set()
        self._poll: asyncio.Task[None] | None = None
        #: Sealed secret -> its key (a Fernet open per attempt would be most of its CPU).
        self._keys: dict[str, bytes] = {}

    async def __aenter__(self) -> Deliveries:
        await self._connections.__aenter__()
        self._poll = asyncio.create_task(self._poll_loop(), name="webhooks-poll")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_join(self._poll)
        await self._tasks.close()
        await self._connections.__aexit__(et, e, tb)

    @property
    def busy(self) -> int:
        """Queues this process works on now."""
        return len(self._active)

    @property
    def free(self) -> int:
        return self._settings.webhook_concurrency - len(self._active)

    def claimable(self, scopes: Iterable[str]) -> list[bool]:
        """For queues of these scopes, in turn, whether this process may take each (a slot
        free, and its scope under ``FLEET_WEBHOOK_INSTANCE_CONCURRENCY``, counting the ones
        before it that it may)."""
        free, held, out = self.free, Counter(self._held), []
        for scope in scopes:
            ok = free > 0 and held[scope] < self._settings.webhook_instance_concurrency
            free, held[scope] = free - ok, held[scope] + ok
            out.append(ok)
        return out

    def start(self, members: Mapping[str, str], heads: Mapping[str, Head | None] | None = None
              ) -> None:  # fmt: skip
        """Work the queues this process has just claimed, each of its scope (``heads``: the
        head of those whose claim read it already)."""
        for m, scope in members.items():
            head = (heads or {}).get(m)
            if m in self._active:
                self._again[m] = head
            else:
                self._active[m] = scope
                self._held[scope] += 1
                self._idle.clear()
                self._tasks.spawn(self._run(m, head), name=f"webhook-{m}", member=m)

    async def idle(self) -> None:
        """Until no queue is worked on (a stop's drain, a test's step)."""
        await self._idle.wait()

    def wake(self) -> None:
        self._wake.set()

    async def _poll_loop(self) -> None:
        while True:
            try:
                wait = await self.poll_once()
            except Exception as exc:  # noqa: BLE001 - task boundary: the store comes back
                log.warning("webhooks.poll_failed", error=repr(exc))
                wait = POLL_S
            self._wake.clear()
            await sleep_or_event(SYSTEM_CLOCK, wait, self._wake)

    async def poll_once(self) -> float:
        """Take the due queues there is room for; how long until the next is due (at most
        ``POLL_S``: another process may make one due sooner)."""
        now = _now_ms()
        if self.free > 0:
            claimed = await self._records.claim(
                now, self.lease_ms, self.free, self.token, held=self._held,
                most_per_scope=self._settings.webhook_instance_concurrency)  # fmt: skip
            self.start(dict(claimed))
        first = await self._records.next_due_ms()
        return POLL_S if first is None else min(POLL_S, max(0.0, (first - now) / 1000))

    async def _run(self, m: str, first: Head | None = None) -> None:
        try:
            while True:
                head: Head | int
                if first is not None:
                    head, first = first, None
                else:
                    head = await self._records.head(m, self.token, _now_ms(), self.lease_ms)
                if head == -2 or (isinstance(head, Head) and head.hook.disabled):
                    dropped = await self._records.drop(m)
                    log.info("webhooks.queue_dropped", member=m, events=dropped)
                    return
                if not isinstance(head, Head) or not await self.attempt(m, head):
                    if m not in self._again:
                        return  # and no await before the discard: a claim after it starts anew
                    first = self._again.pop(m)
        finally:
            self._again.pop(m, None)
            # The slot that freed may take a due queue at once (one of its scope, when that
            # scope was at its most).
            if self._release(m) or self.free == 1:
                self.wake()
            if not self._active:
                self._idle.set()

    def _release(self, m: str) -> bool:
        """``m``'s slot given up; whether its scope held its most."""
        scope = self._active.pop(m)
        capped = self._held[scope] >= self._settings.webhook_instance_concurrency
        self._held[scope] -= 1
        if not self._held[scope]:
            del self._held[scope]
        return capped

    async def attempt(self, m: str, head: Head) -> bool:
        """One attempt at the head of queue ``m``; whether the queue holds more, still ours."""
        ts = int(time.time())
        headers = webhook_signature.headers(self._signing_keys(head.hook, ts), head.event_id, ts,
                                            head.body)  # fmt: skip
        started = time.perf_counter()
        status, retry_after, error = await self._send_checked(head, headers)
        duration_ms = (time.perf_counter() - started) * 1000
        now = _now_ms()
        verdict = judge(self._settings, status=status, retry_after_s=retry_after,
                        failed_before=head.failed, first_at_ms=head.first_at_ms, now_ms=now,
                        failing_since_ms=head.hook.failing_since_ms)  # fmt: skip
        # Rounded up: the attempt that ends the day is never made a millisecond before its end.
        next_due = None if verdict.next_in_s is None else now + math.ceil(verdict.next_in_s * 1000)
        _, queue = parse_member(m)
        record = DeliveryAttempt(
            event_id=head.event_id, type=_TYPE.decode(head.body).type,
            machine_id=None if queue == NO_MACHINE else queue, attempt=head.failed + 1,
            at=datetime.fromtimestamp(now / 1000, UTC), status=status,
            duration_ms=round(duration_ms, 2), error=error, outcome=verdict.outcome,
            next_attempt_at=None if next_due is None else datetime.fromtimestamp(
                next_due / 1000, UTC),
        )  # fmt: skip
        # Each attempt is recorded (webhooks.deliveries); the log has the failures.
        (log.debug if verdict.outcome == "delivered" else log.info)(
            "webhooks.attempt", member=m, event_id=head.event_id, status=status,
            outcome=verdict.outcome, error=error, duration_ms=record.duration_ms)  # fmt: skip
        if verdict.disable:
            log.warning("webhooks.disabled", webhook_id=head.hook.id, reason=verdict.disable)
        return await self._records.settle(m, self.token, head, record, now_ms=now,
                                          lease_ms=self.lease_ms, next_due_ms=next_due,
                                          disable=verdict.disable)  # fmt: skip

    async def _send_checked(
        self, head: Head, headers: dict[str, str]
    ) -> tuple[int | None, float | None, str | None]:
        """The endpoint's URL checked, its event POSTed: the status (None: no answer), its
        ``Retry-After`` and the attempt's error. Of a private destination (reached through
        ``FLEET_WEBHOOK_ALLOW_PRIVATE``) only the status is kept: neither its answer nor why a
        connection failed, which would make webhooks a reader and a port scanner of it."""
        target: Target | None = None
        try:
            # The name's lookup too: a name whose servers never answer ends its attempt in time.
            async with asyncio.timeout(self._settings.webhook_timeout_s):
                target = await check(head.hook.url, self._rules, self._resolve)
                answer = await self._send(target, headers, head.body)
        except Refused as exc:
            return None, None, f"refused: {exc}"
        except PostFailed as exc:
            return None, None, "no answer" if target and target.private else str(exc)
        except TimeoutError:
            return None, None, f"no answer within {self._settings.webhook_timeout_s:g} s"
        if 200 <= answer.status < 300:
            return answer.status, answer.retry_after_s, None
        shown = answer.excerpt if not target.private else ""
        return answer.status, answer.retry_after_s, f"HTTP {answer.status}" + (
            f": {shown}" if shown else "")  # fmt: skip

    def _signing_keys(self, hook: StoredWebhook, now_s: float) -> list[bytes]:
        """The current secret's key, and the previous one's while it still signs."""
        sealed = [hook.sealed_secret]
        if hook.previous_sealed and hook.previous_until and hook.previous_until > now_s:
            sealed.append(hook.previous_sealed)
        return [self._key(s) for s in sealed]

    def _key(self, sealed: str) -> bytes:
        key = self._keys.get(sealed)
        if key is None:
            if len(self._keys) >= 4096:  # endpoints come and go: keep it bounded
                self._keys.clear()
            key = self._keys[sealed] = webhook_signature.secret_key(self._box.decrypt(sealed))
        return key

    async def _post(self, target: Target, headers: dict[str, str], body: bytes) -> Answer:
        return await post(target, headers, body, self._settings.webhook_timeout_s, self._tls,
                          self._connections)  # fmt: skip


def _now_ms() -> int:
    return int(time.time() * 1000)
