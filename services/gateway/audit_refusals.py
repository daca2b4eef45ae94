"""Refusals that authenticate as no one, bounded before they reach the audit stream.

Anyone can send a made-up token or a forged sign-in callback, from as many addresses as they
hold. Each such refusal is an entry, but only ``per_min`` a minute from one client address and
ten times that from all of them together; past either, the refusal is counted (by method and by
address) and the counts are written as one ``audit.suppressed`` entry per period. A refusal of
a caller the gateway knows (a viewer's exec, a cookie's missing CSRF token) is never bounded
here: that caller is accountable, and every one of its calls is recorded anyway.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from services.common.ticker import Ticker
from services.gateway.limits import RateLimiter

#: The limit over every address together, as a multiple of the per-address one.
OVERALL_FACTOR = 10
#: Addresses counted by name in one period; the rest are counted together.
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
        self._methods[method] += 1
        known = address in self._addresses or len(self._addresses) < MAX_ADDRESSES
        self._addresses[address if known else OTHER] += 1
        return False

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


class SuppressedWriter(Ticker):
    """Every ``interval_s``, what the gate counted, handed to ``write`` (one entry)."""

    name = "audit.suppressed"
    failed_event = "audit.suppressed_failed"

    def __init__(self, gate: RefusalGate, write: Callable[[dict[str, Any]], None],
                 interval_s: float) -> None:  # fmt: skip
        super().__init__(interval_s)
        self._gate = gate
        self._write = write

    async def tick(self) -> None:
        self.flush()

    def flush(self) -> None:
        counts = self._gate.take_counts()
        if counts is not None:
            self._write(counts)
