"""The placement watchdog: a ``machine.created`` that no host takes fails, it does not wait
forever (docs/hosts.md). No host is chosen here: hosts pull creates while they have room."""

from __future__ import annotations

import structlog

from base.clock import Clock
from contracts.bus.consumers import Durable
from contracts.bus.events import Event, MachineCreated, MachineFailed
from contracts.gateway.hosts import NO_HOST_WITH_CAPACITY, PLACEMENT_STAGE, HostInfo
from contracts.ids import derived_event_id
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.events.consumer import Retry
from controlplane.events.subscriptions import subscriber
from controlplane.hosts import has_room, host_infos
from controlplane.settings import Settings
from controlplane.store import Store

log = structlog.get_logger(__name__)

#: How often an untaken create is looked at while a host has room for it.
_RECHECK_S = 2.0


def _placement_budget(settings: Settings) -> float:
    """Past the timeout, a create waits on while some host has room (it will pull it), but
    not past this."""
    return settings.placement_timeout_s + 3600.0


def _hosts_summary(hosts: list[HostInfo]) -> str:
    if not hosts:
        return "no host has announced itself"
    return ", ".join(
        f"{h.host_id} {h.state.value}{' memory-low' if h.memory_low else ''} "
        f"{h.running}/{h.capacity or 'unlimited'}"
        for h in hosts
    )


class PlacementWatchdog:
    """``machine.created`` watched until a host takes it; how long a create waited is
    ``clock``'s now less the event's time."""

    def __init__(self, store: Store, bus: Bus, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.clock = clock

    async def give_up_placement(self, event: Event, reason: str) -> None:
        await self.fail_unplaced(event, f"{NO_HOST_WITH_CAPACITY}: {reason}")

    @subscriber(
        MachineCreated, durable=Durable.PROBER_PLACEMENT, retry_budget=_placement_budget,
        give_up=give_up_placement,
    )  # fmt: skip
    async def on_created(self, event: MachineCreated) -> None:
        timeout = self.settings.placement_timeout_s
        waited = self.clock.now() - event.occurred_at.timestamp()
        machine = await self.store.get_machine(event.machine_id)
        if machine.status is not S.CREATED:
            return  # a host took it (or it was archived)
        if waited < timeout:
            raise Retry("waiting for a host to take it", delay_s=min(_RECHECK_S, timeout - waited))
        hosts = await host_infos(self.store, self.settings)
        if any(has_room(h) for h in hosts):
            raise Retry("a host has room: waiting for it to take the machine", delay_s=_RECHECK_S)
        await self.fail_unplaced(
            event, f"{NO_HOST_WITH_CAPACITY} took it within {timeout:g}s ({_hosts_summary(hosts)})"
        )

    async def fail_unplaced(self, event: Event, reason: str) -> None:
        """Failed, only if no host took it meanwhile (compare-and-set on ``created``)."""
        status_reason = f"{PLACEMENT_STAGE} failed: {reason}"
        if not await self.store.hosts.fail_unplaced(event.machine_id, status_reason):
            log.info("placement.taken_meanwhile", machine_id=event.machine_id)
            return
        log.warning("placement.failed", machine_id=event.machine_id, reason=reason)
        await self.bus.publish(
            MachineFailed(
                event_id=derived_event_id(event.event_id, "failed"),
                machine_id=event.machine_id,
                stage=PLACEMENT_STAGE,
                reason=reason,
            )
        )
