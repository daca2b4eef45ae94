"""Auto-stop: the prober, which owns liveness, stops machines that have been idle too long.

Idle means no gateway activity (``services.gateway.activity``: exec, terminal input, file or
port traffic, codemode calls) for the instance's ``idleAfterS`` (``instances.setAutoStop``).
Background processes and cron jobs are not activity: the daemon never reports them. A machine
with no recorded activity yet starts its clock at the first look. Replicas may look at once:
the stop is a compare-and-set, so only one of them stops a machine and says so.
"""

from __future__ import annotations

import structlog

from contracts.models import Machine
from contracts.status import MachineStatus as S
from core.clock import SYSTEM_CLOCK, Clock
from core.ticker import Ticker
from services.common.bus import Bus
from services.common.settings import Settings
from services.common.stop_start import stop_machine
from services.common.store import Store
from services.common.store_stop import autostops, last_activity, record_activity

log = structlog.get_logger(__name__)

#: Only a machine that is up is stopped for idleness: one on its way up has had no chance.
_IDLE_CANDIDATES = frozenset({S.READY, S.UNRESPONSIVE})


def idle_reason(idle_after_s: int) -> str:
    return f"idle for {idle_after_s} s"


def idle_machines(
    machines: list[Machine], last: dict[str, float | None], idle_after_s: int, now: float
) -> list[Machine]:
    """The machines whose last activity is ``idle_after_s`` or more ago (None: unknown)."""
    return [
        m for m in machines
        if m.status in _IDLE_CANDIDATES and (seen := last.get(m.id)) is not None
        and now - seen >= idle_after_s
    ]  # fmt: skip


class IdleStopper(Ticker):
    name = "autostop"
    failed_event = "autostop.tick_failed"

    def __init__(
        self, *, store: Store, bus: Bus, settings: Settings, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(settings.autostop_tick_s, clock)
        self.store = store
        self.bus = bus

    async def tick(self) -> int:
        return await self.sweep()

    async def sweep(self) -> int:
        """Stop every idle machine of the instances with auto-stop on; how many."""
        stopped = 0
        for instance_id, idle_after_s in (await autostops(self.store)).items():
            machines = [m for m in await self.store.list_machines(instance_id)
                        if m.status in _IDLE_CANDIDATES]  # fmt: skip
            last = await last_activity(self.store, [m.id for m in machines])
            now = self.clock.now()
            unseen = {m.id: now for m in machines if last.get(m.id) is None}
            await record_activity(self.store, unseen)  # the clock starts now
            for m in idle_machines(machines, last, idle_after_s, now):
                t = await stop_machine(self.store, self.bus, m.id, idle_reason(idle_after_s))
                if t.moved:
                    stopped += 1
                    log.info("autostop.stopped", machine_id=m.id, idle_after_s=idle_after_s)
        return stopped
