"""Machines of a lost host (docs/hosts.md): once a host has missed its heartbeats for
``FLEET_HOST_LOST_AFTER_S``, each of its machines that is ``unresponsive`` (its own heartbeats
stopped too) is marked ``lost``, naming the host, and ``machine.lost`` says so. A machine that
still beats stays ``ready``: it is reachable, whatever became of its host's provisioner. A lost
machine's first beat after its host comes back makes it ``ready`` again (the heartbeat
monitor's recovery); ``machines.rebuild`` puts its instance on a live host meanwhile, and so
does the prober itself once the host has been lost for ``FLEET_HOST_LOST_REBUILD_S``
(``lost_rebuild.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.bus.events import MachineLost
from contracts.gateway.hosts import HostInfo
from contracts.ids import new_event_id
from contracts.status import HostState, MachineStatus as S
from controlplane.bus import Bus
from controlplane.hosts import host_info, lost_reason
from controlplane.settings import Settings
from controlplane.store import Store
from services.prober.lost_rebuild import LostRebuilder

log = structlog.get_logger(__name__)


class HostLossMonitor(Ticker):
    """Sweeps the hosts every ``interval_s`` while entered."""

    name = "host-loss"
    failed_event = "liveness.host_sweep_failed"

    def __init__(
        self, *, store: Store, bus: Bus, settings: Settings, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        # A few sweeps per lost-after period: a host's machines are marked soon after it is.
        interval_s = max(0.1, min(settings.host_heartbeat_s, settings.host_lost_after_s / 4))
        super().__init__(interval_s, clock)
        self.store = store
        self.bus = bus
        self.lost_after_s = settings.host_lost_after_s
        self.rebuild_after_s = settings.host_lost_rebuild_s
        self.rebuilder = LostRebuilder(store=store, bus=bus, settings=settings)

    async def tick(self) -> int:
        return await self.sweep()

    async def sweep(self) -> int:
        """Mark the unresponsive machines of every lost host lost; returns how many moved."""
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        marked: list[MachineLost] = []
        records = await self.store.hosts.all()
        hosts = [host_info(r, self.lost_after_s, now.timestamp()) for r in records]
        for record, host in zip(records, hosts, strict=True):
            if host.state is not HostState.LOST:
                continue
            reason = lost_reason(host, now)
            for machine_id in sorted(record.occupancy.running):
                # Compare-and-set: only an unresponsive machine moves, and only one prober
                # replica moves it (and publishes).
                if not (await self.store.transition(machine_id, S.LOST, reason)).moved:
                    continue
                log.warning("machine.lost", machine_id=machine_id, host_id=host.host_id)
                marked.append(MachineLost(event_id=new_event_id(), machine_id=machine_id,
                                          host_id=host.host_id, reason=reason))  # fmt: skip
        await self.bus.publish_many(marked)
        for record, host in zip(records, hosts, strict=True):
            if self._rebuild_due(host, now):
                await self.rebuilder.rebuild(host, sorted(record.occupancy.running), hosts)
        return len(marked)

    def _rebuild_due(self, host: HostInfo, now: datetime) -> bool:
        """The host has been lost for ``FLEET_HOST_LOST_REBUILD_S`` (when it is set)."""
        if not self.rebuild_after_s or host.state is not HostState.LOST:
            return False
        silent = (now - host.last_heartbeat).total_seconds()
        return silent >= self.lost_after_s + self.rebuild_after_s
