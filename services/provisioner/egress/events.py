"""``machine.egress-denied``: what a machine's network policy refused, as events, at most
``BURST`` per machine per ``WINDOW_S``; the refusals past that are counted and the count goes
with the machine's next event (``dropped``), so a machine hammering a denied name cannot fill
the event stream."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import structlog

from base.tasks import OwnedTasks
from contracts.bus.events import MachineEgressDenied
from contracts.ids import new_event_id
from controlplane.bus import Bus

log = structlog.get_logger(__name__)
BURST = 5
WINDOW_S = 10.0


@dataclass
class _Budget:
    window_start: float
    sent: int = 0
    dropped: int = 0


class EgressEvents:
    """Publishes refusals (``refused`` is a plain call, from the DNS proxy); its publishing
    tasks are joined on exit."""

    def __init__(
        self,
        bus: Bus,
        burst: int = BURST,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._budgets: dict[str, _Budget] = {}
        #: Publishes under way, waited for on exit (a failed one is logged, not retried).
        self._tasks = OwnedTasks("egress-events", drain_s=None, failed_event="egress.event_failed")

    async def __aenter__(self) -> EgressEvents:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.close()

    def refused(self, machine_id: str, name: str, reason: str, destination: str = "",
                port: int = 0) -> None:  # fmt: skip
        now = self.clock()
        budget = self._budgets.setdefault(machine_id, _Budget(now))
        if now - budget.window_start >= self.window_s:
            budget.window_start, budget.sent = now, 0
        if budget.sent >= self.burst:
            budget.dropped += 1
            return
        budget.sent += 1
        event = MachineEgressDenied(event_id=new_event_id(), machine_id=machine_id,
                                    destination=destination, port=port, name=name,
                                    reason=reason, dropped=budget.dropped)  # fmt: skip
        budget.dropped = 0
        self._tasks.spawn(self.bus.publish(event), machine_id=machine_id)

    def forget(self, machine_id: str) -> None:
        self._budgets.pop(machine_id, None)
