"""This provisioner's host: its heartbeat in the store, and the room it has left for machines
(docs/hosts.md). Every provisioner replica on one host heartbeats for it under the same id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from controlplane.settings import Settings
from controlplane.store import Store
from providers.host_memory import mem_available_mb

log = structlog.get_logger(__name__)


class HostHeartbeat(Ticker):
    """Announces the host at entry, then every ``FLEET_HOST_HEARTBEAT_S`` of ``clock``'s time
    until exit; each beat is dated by ``clock``."""

    name = "host-heartbeat"
    failed_event = "host.heartbeat_failed"

    def __init__(
        self, store: Store, settings: Settings, clock: Clock = SYSTEM_CLOCK,
        memory: Callable[[], float | None] = mem_available_mb, proxy_url: str = "",
    ) -> None:  # fmt: skip
        """``proxy_url``: where this host's gvisor machines reach the egress proxy, recorded
        with each beat for the stages that write a machine's configuration."""
        super().__init__(settings.host_heartbeat_s, clock)
        self._proxy_url = proxy_url
        self._store = store
        #: The host's available memory, MiB (providers/host_memory.py): what its floor reads.
        self.memory = memory
        self._host_id = settings.host_id
        self._capacity = settings.host_capacity
        self._min_available_mb = settings.host_min_available_mb
        #: hosts.drain's flag as of the last heartbeat (logged when it changes; the capacity
        #: gate reads the store's at each fetch).
        self.draining = False

    async def __aenter__(self) -> Self:
        await self.beat()
        log.info("host.announced", host_id=self._host_id, capacity=self._capacity)
        return await super().__aenter__()

    async def tick(self) -> None:
        await self.beat()

    async def beat(self) -> None:
        """One heartbeat now (its flag: whether the host is drained)."""
        low = memory_low(self._min_available_mb, self.memory)
        draining = await self._store.hosts.beat(
            self._host_id, self._capacity, self.clock.now(), memory_low=low,
            proxy_url=self._proxy_url,
        )  # fmt: skip
        if draining != self.draining:
            log.info("host.draining" if draining else "host.takes_machines", host_id=self._host_id)
        self.draining = draining


def memory_low(
    min_available_mb: int, available_mb: Callable[[], float | None] = mem_available_mb
) -> bool:
    """Below the host's memory floor (``FLEET_HOST_MIN_AVAILABLE_MB``; 0: never)."""
    if min_available_mb <= 0:
        return False
    available = available_mb()
    return available is not None and available < min_available_mb


async def room_left(
    store: Store,
    settings: Settings,
    held: frozenset[str],
    *,
    draining: bool = False,
    available_mb: Callable[[], float | None] = mem_available_mb,
) -> int | None:
    """How many more machines this host may take, counting those whose ``machine.created``
    it holds (fetched, not done): None when its capacity is unlimited; 0 when drained or
    below its memory floor."""
    if draining or memory_low(settings.host_min_available_mb, available_mb):
        return 0
    if settings.host_capacity <= 0:
        return None
    occupancy = await store.hosts.occupancy(settings.host_id)
    return settings.host_capacity - len(occupancy.running | held)
