"""This provisioner's host: its heartbeat in the store, and the room it has left for machines
(docs/hosts.md). Every provisioner replica on one host heartbeats for it under the same id."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import structlog

from services.common.settings import Settings
from services.common.store import Store

log = structlog.get_logger(__name__)


class HostHeartbeat:
    """Announces the host at entry, then every ``FLEET_HOST_HEARTBEAT_S`` until exit."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._host_id = settings.host_id
        self._capacity = settings.host_capacity
        self._interval_s = settings.host_heartbeat_s
        self._task: asyncio.Task[None] | None = None
        #: hosts.drain's flag as of the last heartbeat: a drained host takes no new machines.
        self.draining = False

    async def __aenter__(self) -> HostHeartbeat:
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name=f"host-heartbeat:{self._host_id}")
        log.info("host.announced", host_id=self._host_id, capacity=self._capacity)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def beat(self) -> None:
        """One heartbeat now (its flag: whether the host is drained)."""
        draining = await self._store.hosts.beat(self._host_id, self._capacity, time.time())
        if draining != self.draining:
            log.info("host.draining" if draining else "host.takes_machines", host_id=self._host_id)
        self.draining = draining

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - task boundary: the next beat retries
                log.warning("host.heartbeat_failed", host_id=self._host_id, error=repr(exc))


async def room_left(
    store: Store, settings: Settings, held: frozenset[str], *, draining: bool = False
) -> int | None:
    """How many more machines this host may take, counting those whose ``machine.created``
    it holds (fetched, not done): None when its capacity is unlimited; 0 when drained."""
    if draining:
        return 0
    if settings.host_capacity <= 0:
        return None
    occupancy = await store.hosts.occupancy(settings.host_id)
    return settings.host_capacity - len(occupancy.running | held)
