"""Memory pressure (docs/stop-start.md#memory-pressure): while this host's available memory
(providers/host_memory.py) is under ``FLEET_PAUSE_UNDER_MB``, its provisioner pauses its
longest-idle gvisor machines, by the path ``machines.pause`` takes, before the kernel's OOM
killer picks anything. A pause keeps everything of a machine on disk and frees its host memory;
the OOM killer would lose a machine's processes.

The rules:

- **Who.** This host's ``ready`` machines that keep their memory (gvisor on ``local``), whose
  last pause was not refused, and that had no gateway activity for ``FLEET_PAUSE_IDLE_MIN_S``:
  longest idle first, by the activity auto-stop goes by (controlplane/machines/idleness.py), so the
  machine auto-pause would pause next goes first. A busy machine is never paused for memory:
  its next call would wake it, its memory back at once. An instance's auto-stop setting does
  not matter: a pause loses nothing.
- **How many.** At most ``FLEET_PAUSE_PER_ROUND`` a round, and no round while a machine of
  the host is ``pausing``: what those pauses free is read before more are asked.
- **Hysteresis.** Pressure begins under ``FLEET_PAUSE_UNDER_MB`` and ends only once the host is
  back at 1.5 times that (at least 64 MiB more), so memory hovering about the mark neither
  starts nor ends it each round. A machine woken meanwhile counts as busy (its resume is
  activity), so pressure does not pause it again for ``FLEET_PAUSE_IDLE_MIN_S``.

Pressure is per host, so it is the provisioner's (one per host), not the prober's (one for the
platform). Two replicas of one host may each ask a round at once; each pause is a
compare-and-set, so no machine is paused twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.bus.events import PauseBy
from contracts.errors import NotFound
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.machines.idleness import idle_machines, last_activity, longest_idle_first
from controlplane.machines.status_transitions import PAUSE_REFUSED, pause_machine
from controlplane.policy import keeps_memory
from controlplane.settings import Settings
from controlplane.store import Store

log = structlog.get_logger(__name__)

#: The least room pressure wants back above its mark before it ends, MiB.
_MIN_HYSTERESIS_MB = 64


def release_mb(under_mb: int) -> int:
    """Where pressure that began under ``under_mb`` ends."""
    return under_mb + max(_MIN_HYSTERESIS_MB, under_mb // 2)


def pressure_reason(available_mb: float, under_mb: int) -> str:
    return (f"host memory low: {available_mb:.0f} MiB available, under {under_mb} MiB "
            "(FLEET_PAUSE_UNDER_MB)")  # fmt: skip


class Gauge:
    """Whether the host is under pressure, with hysteresis: pressed under ``under_mb``, until
    back at ``release_mb(under_mb)``. An unknown reading changes nothing."""

    def __init__(self, under_mb: int) -> None:
        self.under_mb = under_mb
        self.release_mb = release_mb(under_mb)
        self.pressed = False

    def read(self, available_mb: float | None) -> bool:
        """Whether the host is under pressure after this reading (logs a change)."""
        if available_mb is None:
            return self.pressed
        if not self.pressed and available_mb < self.under_mb:
            self.pressed = True
            log.warning("memory.pressure_began", available_mb=round(available_mb),
                        under_mb=self.under_mb)  # fmt: skip
        elif self.pressed and available_mb >= self.release_mb:
            self.pressed = False
            log.info("memory.pressure_ended", available_mb=round(available_mb),
                     release_mb=self.release_mb)  # fmt: skip
        return self.pressed


def pausable(m: Machine) -> bool:
    """A machine memory pressure may pause, if idle: ready, keeping its memory, and not just
    refused a pause (it would be refused again)."""
    return (m.status is S.READY and keeps_memory(m.runtime, m.provider)
            and not m.status_reason.startswith(PAUSE_REFUSED))  # fmt: skip


class MemoryPressure(Ticker):
    """Every ``FLEET_MEMORY_PRESSURE_TICK_S``: reads the host's available memory (``memory``)
    and, under pressure, pauses up to ``FLEET_PAUSE_PER_ROUND`` of its idle machines."""

    name = "memory-pressure"
    failed_event = "memory.round_failed"

    def __init__(
        self, *, store: Store, bus: Bus, settings: Settings,
        memory: Callable[[], float | None], clock: Clock = SYSTEM_CLOCK,
    ) -> None:  # fmt: skip
        super().__init__(settings.memory_pressure_tick_s, clock)
        self.store = store
        self.bus = bus
        self.settings = settings
        self.memory = memory
        self.gauge = Gauge(settings.pause_under_mb)
        #: Said once a pressure: no machine of the host may be paused (all busy, or none).
        self._said_none = False

    async def tick(self) -> list[str]:
        return await self.round()

    async def round(self) -> list[str]:
        """One reading, and the machines it paused (their ids)."""
        available = self.memory()
        if available is None:  # unknown: nothing changes
            return []
        if not self.gauge.read(available):
            self._said_none = False
            return []
        machines = await self._host_machines()
        if any(m.status is S.PAUSING for m in machines):
            return []  # what those free is read first
        now = self.clock.now()
        candidates = [m for m in machines if pausable(m)]
        last = await last_activity(self.store, candidates, now)
        idle = idle_machines(candidates, last, self.settings.pause_idle_min_s, now)
        chosen = longest_idle_first(idle, last)[: self.settings.pause_per_round]
        if not chosen and not self._said_none:
            log.warning("memory.nothing_to_pause", available_mb=round(available),
                        busy=len(candidates), machines=len(machines))  # fmt: skip
        self._said_none = not chosen
        reason = pressure_reason(available, self.gauge.under_mb)
        paused = []
        for m in chosen:
            t = await pause_machine(self.store, self.bus, m.id, reason, PauseBy.MEMORY_PRESSURE)
            if t.moved:
                paused.append(m.id)
                log.warning("memory.paused", machine_id=m.id, idle_s=round(now - last[m.id]),
                            available_mb=round(available))  # fmt: skip
        return paused

    async def _host_machines(self) -> list[Machine]:
        """This host's machines, as they are now (one gone meanwhile left out)."""
        ids = sorted((await self.store.hosts.occupancy(self.settings.host_id)).running)
        found = await asyncio.gather(*(self._machine(mid) for mid in ids))
        return [m for m in found if m is not None]

    async def _machine(self, machine_id: str) -> Machine | None:
        with contextlib.suppress(NotFound):
            return await self.store.get_machine(machine_id)
        return None
