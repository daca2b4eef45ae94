"""Gateway activity on a machine: what auto-stop counts (docs/stop-start.md).

``ActivityClock.record(machine_id)`` is the one call: every daemon-bound gateway method makes
it through ``Access.live_machine``, and code that moves bytes to a machine on its own (a
terminal's input, a file or port stream) calls it per chunk or per second as it likes. Writes
are coalesced: one Redis write per machine per ``every_s`` from this process at most, so a
busy terminal costs nothing measurable.
"""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from controlplane.store import Store

log = structlog.get_logger(__name__)


class ActivityClock:
    def __init__(self, store: Store, every_s: float = 1.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._store = store
        self._every_s = every_s
        self._written: dict[str, float] = {}

    async def record(self, machine_id: str) -> None:
        """``machine_id`` had gateway activity now."""
        now = self._clock.now()
        if now - self._written.get(machine_id, 0.0) < self._every_s:
            return
        self._written[machine_id] = now
        if len(self._written) > 100_000:  # bounded: forget the oldest half
            for mid, _ in sorted(self._written.items(), key=lambda kv: kv[1])[:50_000]:
                del self._written[mid]
        await self._store.stops.record_activity({machine_id: now})
