"""Refusals, bounded before they reach the audit stream: counted, never dropped silently.

Anyone can send a made-up token or a forged sign-in callback, from as many addresses as they
hold. Each such refusal is an entry, but only ``per_min`` a minute from one client address and
ten times that from all of them together (``RefusalGate``); past either, the refusal is counted
(by method and by address) and the counts are written as one ``audit.suppressed`` entry per
period.

A caller the gateway knows (a viewer's exec, a token's call outside its instances, a cookie's
missing CSRF token) is accountable, but can still flood: each of its refused or failed calls is
an entry up to its own budget a minute, and the callers together up to ten times that
(``CallerRefusals``); past it, they are counted by method and written as one
``audit.suppressed`` entry per caller per period, naming the caller. What a caller did (a
state change that went through, a sign-in) is never bounded here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from services.gateway.auth.rate_limits import RateLimiter

#: The limit over every address together, as a multiple of the per-address one.
OVERALL_FACTOR = 10
#: Addresses (or callers) counted by name in one period; the rest are counted together.
MAX_ADDRESSES = 1000
OTHER = "other"


class RefusalGate:
    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_address = RateLimiter(per_min, clock=clock)
        self._overall = RateLimiter(per_min * OVERALL_FACTOR, clock=clock)
        self._methods: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()

    def admit(self, method: str, address: str | None) -> bool:
        """Whether this refusal is an entry of its own; if not, it is counted."""
        address = address or "unknown"
        if not self._by_address.take(address) and not self._overall.take(""):
            return True
        self.count(method, address)
        return False

    def count(self, method: str, address: str | None) -> None:
        """Count a refusal that is no entry of its own."""
        address = address or "unknown"
        self._methods[method] += 1
        known = address in self._addresses or len(self._addresses) < MAX_ADDRESSES
        self._addresses[address if known else OTHER] += 1

    def take_counts(self) -> dict[str, Any] | None:
        """What was counted since the last call (the params of one ``audit.suppressed``
        entry), most frequent first; None when nothing was."""
        if not self._methods:
            return None
        counts = {"count": sum(self._methods.values()),
                  "methods": dict(self._methods.most_common()),
                  "addresses": dict(self._addresses.most_common())}  # fmt: skip
        self._methods.clear()
        self._addresses.clear()
        return counts


@dataclass(frozen=True)
class Summary:
    """One caller's refusals past its budget, since the last summary."""

    count: int
    methods: dict[str, int]
    #: The refusals' error codes, most frequent first.
    codes: dict[int, int]
    tokens: dict[str, int]
    #: Several callers' together (``OTHER``): how many each.
    callers: dict[str, int] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """The params of its ``audit.suppressed`` entry."""
        out = {"count": self.count, "methods": self.methods, "tokens": self.tokens,
               "errorCodes": {str(c): n for c, n in self.codes.items()}}  # fmt: skip
        return out | ({"callers": self.callers} if self.callers else {})


def merged(summaries: dict[str, Summary]) -> Summary:
    """Several callers' summaries as one (its ``callers``: how many each)."""
    methods, codes, tokens = Counter[str](), Counter[int](), Counter[str]()
    for s in summaries.values():
        methods.update(s.methods)
        codes.update(s.codes)
        tokens.update(s.tokens)
    return Summary(sum(methods.values()), dict(methods.most_common()),
                   dict(codes.most_common()), dict(tokens.most_common()),
                   {actor: s.count for actor, s in summaries.items()})  # fmt: skip


class _Counts:
    def __init__(self) -> None:
        self.methods: Counter[str] = Counter()
        self.codes: Counter[int] = Counter()
        self.tokens: Counter[str] = Counter()


class CallerRefusals:
    """Known callers' refusals: ``per_min`` entries a minute for each caller (its ``actor``:
    the user, else the token), ten times that for all of them; the rest counted, by caller."""

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_actor = RateLimiter(per_min, clock=clock)
        self._overall = RateLimiter(per_min * OVERALL_FACTOR, clock=clock)
        self._counts: dict[str, _Counts] = {}

    def admit(self, actor: str, method: str, code: int, token_id: str | None) -> bool:
        """Whether this refusal is an entry of its own; if not, it is counted."""
        if not self._by_actor.take(actor) and not self._overall.take(""):
            return True
        self.count(actor, method, code, token_id)
        return False

    def count(self, actor: str, method: str, code: int, token_id: str | None) -> None:
        """Count a refusal that is no entry of its own."""
        known = actor in self._counts or len(self._counts) < MAX_ADDRESSES
        counts = self._counts.setdefault(actor if known else OTHER, _Counts())
        counts.methods[method] += 1
        counts.codes[code] += 1
        counts.tokens[token_id or "none"] += 1

    def take_counts(self) -> dict[str, Summary]:
        """What was counted since the last call, by caller (``OTHER``: the callers past the
        number named)."""
        taken, self._counts = self._counts, {}
        return {actor: Summary(sum(c.methods.values()), dict(c.methods.most_common()),
                               dict(c.codes.most_common()), dict(c.tokens.most_common()))
                for actor, c in taken.items()}  # fmt: skip

    def take_summaries(self, room: int) -> list[tuple[str, Summary]]:
        """``take_counts``, most counted first, in at most ``room`` summaries (at least one):
        the callers past ``room - 1`` are one summary together, under ``OTHER``."""
        ranked = sorted(self.take_counts().items(), key=lambda kv: -kv[1].count)
        if len(ranked) <= max(1, room):
            return ranked
        keep = max(0, room - 1)
        return [*ranked[:keep], (OTHER, merged(dict(ranked[keep:])))]


class SuppressedWriter(Ticker):
    """Every ``interval_s``, ``flush``: what the gates counted, written as entries."""

    name = "audit.suppressed"
    failed_event = "audit.suppressed_failed"

    def __init__(self, flush: Callable[[], None], interval_s: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        super().__init__(interval_s, clock)
        self.flush = flush

    async def tick(self) -> None:
        self.flush()
