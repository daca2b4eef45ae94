"""Rate limits of the gateway: token buckets kept in this process.

In process, not in Redis: a limit is a guard against floods, not an accounting, so the cost of
a Redis round trip on every guarded call (and a Redis outage turning into refused calls) buys
nothing an operator needs. With N gateway replicas behind a balancer a token gets up to N times
the configured rate; `docs/security-gateway.md` says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import FleetError, RateLimited
from contracts.rpc.jsonrpc import BUDGETS, AnySpec, Budget, Params
from controlplane.settings import Settings
from services.gateway.auth.access import Caller

P = TypeVar("P", bound=Params)
R = TypeVar("R")

#: Buckets kept at most; past it, the full ones (clients that went quiet) are forgotten.
MAX_KEYS = 100_000


class RateLimiter:
    """A token bucket per key: ``per_min`` calls at once, refilled evenly over a minute.
    ``per_min`` 0 means no limit."""

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self._rate = per_min / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.per_min), now))
        return min(float(self.per_min), tokens + (now - at) * self._rate)

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may call again (0: now); takes nothing."""
        if self.per_min <= 0:
            return 0.0
        level = self._level(key, self._clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self._rate

    def take(self, key: str) -> float:
        """Take one call for ``key``: 0 when allowed, else the seconds to wait (nothing taken)."""
        if self.per_min <= 0:
            return 0.0
        now = self._clock()
        level = self._level(key, now)
        if level < 1.0:
            return (1.0 - level) / self._rate
        if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (level - 1.0, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.per_min]
        for k in full or list(self._buckets)[: MAX_KEYS // 10]:
            del self._buckets[k]


def retry_after_s(wait_s: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))


def rate_limited(what: str, wait_s: float) -> RateLimited:
    """RateLimited for "too many <what>", saying when to retry."""
    after = retry_after_s(wait_s)
    return RateLimited(f"too many {what}; retry in {after} s", data={"retryAfterS": after})


class BadSecrets:
    """Bad secrets, counted per source address and per kind of secret (a bearer token, an
    events ticket, a preview ticket, a preview cookie). Only a secret that failed is counted,
    and only a failed one is refused: a valid token is served whatever its address sent
    before, and a flood of made-up tickets does not use up the bad-token budget. Past its
    budget a bad secret is answered 429 rather than 401."""

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = RateLimiter(per_min, clock=clock)

    def refuse(self, kind: str, address: str, refused: FleetError) -> FleetError:
        """The error for one more bad ``kind`` from ``address``: ``refused`` (an Unauthorized,
        a Forbidden), or RateLimited once that address sent too many of that kind."""
        wait = self._buckets.take(f"{kind} {address}")
        return rate_limited(f"bad {kind}s from this address", wait) if wait else refused


class CallLimits:
    """The per-token limits of the methods that cost the platform most: creating machines
    (create, rebuild and fork share one bucket), running commands or code on them (a command,
    streamed or not, a kernel's or codemode's code run), building environments
    (``environments.build``: a build, or an image ID it answers) and pausing, resuming or
    snapshotting machines (one bucket: each writes or reads a machine's memory or home), and
    testing webhook endpoints (each queues an event in the platform's store). Which
    a method spends is its spec's ``budget``, on every route that runs it. The operator's
    admin callers are not limited: they are trusted with the whole platform anyway."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.create = RateLimiter(settings.rate_create_per_min, clock=clock.monotonic)
        self.exec = RateLimiter(settings.rate_exec_per_min, clock=clock.monotonic)
        self.build = RateLimiter(settings.rate_build_per_min, clock=clock.monotonic)
        self.pause = RateLimiter(settings.rate_pause_per_min, clock=clock.monotonic)
        self.webhook_test = RateLimiter(settings.rate_webhook_test_per_min, clock=clock.monotonic)

    def budget(self, name: Budget) -> RateLimiter:
        """The limiter of a spec's ``budget``."""
        return {"create": self.create, "exec": self.exec, "build": self.build,
                "pause": self.pause, "webhook_test": self.webhook_test}[name]  # fmt: skip

    def spend(self, spec: AnySpec, caller: Caller) -> None:
        """One call of ``spec`` by ``caller`` taken from the budget its spec names (none:
        nothing to take), or RateLimited, nothing taken."""
        if spec.budget is None or caller.admin:
            return
        wait = self.budget(spec.budget).take(caller.token_id)
        if wait:
            raise rate_limited(f"{BUDGETS[spec.budget]} for this token", wait)

    def guard(
        self, spec: AnySpec, handler: Callable[[P, Caller], Awaitable[R]]
    ) -> Callable[[P, Caller], Awaitable[R]]:
        """``handler``, refusing a caller past ``spec``'s budget with RateLimited (nothing
        runs), unless the route that started the call paid it already (``Caller.prepaid``:
        a route that must refuse before its answer begins, a stream's 429, spends it first)."""

        async def limited(params: P, caller: Caller) -> R:
            if caller.prepaid != spec.name:
                self.spend(spec, caller)
            return await handler(params, caller)

        return limited
