"""Hosts as the gateway shows them and the placement watchdog weighs them (docs/hosts.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from base.clock import SYSTEM_CLOCK, Clock
from contracts.gateway.hosts import HostInfo
from contracts.status import HostState
from controlplane.settings import Settings
from controlplane.store import HostRecord, Store


def host_info(record: HostRecord, lost_after_s: float, now: float) -> HostInfo:
    lost = now - record.last_beat > lost_after_s
    state = HostState.DRAINING if record.draining else HostState.ACTIVE
    return HostInfo(
        host_id=record.host_id,
        capacity=record.capacity or None,
        running=len(record.occupancy.running),
        stopped=record.occupancy.stopped,
        last_heartbeat=datetime.fromtimestamp(record.last_beat, UTC),
        state=HostState.LOST if lost else state,
        memory_low=record.memory_low,
    )


async def host_infos(
    store: Store, settings: Settings, clock: Clock = SYSTEM_CLOCK
) -> list[HostInfo]:
    """Every host that ever announced itself, by id."""
    now = clock.now()
    return [host_info(r, settings.host_lost_after_s, now) for r in await store.hosts.all()]


def lost_reason(host: HostInfo, now: datetime) -> str:
    """What a machine of a lost host says: "its host host-3 is lost: no heartbeat ... 31s"."""
    silent = (now - host.last_heartbeat).total_seconds()
    return f"its host {host.host_id} is lost: no heartbeat from it for {silent:.0f}s"


async def lost_hosts(
    store: Store, settings: Settings, clock: Clock = SYSTEM_CLOCK
) -> dict[str, str]:
    """Each lost host -> the reason its machines give."""
    now = datetime.fromtimestamp(clock.now(), UTC)
    return {
        h.host_id: lost_reason(h, now)
        for h in await host_infos(store, settings, clock)
        if h.state is HostState.LOST
    }


def has_room(host: HostInfo) -> bool:
    """The host takes new machines now: active, and below its capacity (if it has one)."""
    if host.state is not HostState.ACTIVE or host.memory_low:
        return False
    return host.capacity is None or host.running < host.capacity
