"""The instance's disk budget at this host's copies (controlplane/store/disk.py,
``FLEET_INSTANCE_DISK_MB``): a snapshot, a memory image, a fork's home and a paused machine's
image each take their place, estimated, before the copy starts, and hold what the copy took
once it is made; a failed copy gives its place back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import structlog

from base.ticker import Ticker
from contracts.models import Machine
from controlplane.settings import Settings
from controlplane.store import Store, disk as store_disk
from providers.base import DiskMeter, capability
from services.provisioner.builds.environment import machine_limits

log = structlog.get_logger(__name__)

MB = store_disk.MB


class DiskBudget:
    """``limit_mb``: FLEET_INSTANCE_DISK_MB; ``memory_mb``: a machine's memory limit (what
    its memory image may take at most)."""

    def __init__(self, store: Store, limit_mb: int,
                 memory_mb: Callable[[Machine], Awaitable[int]],
                 hold_s: float = store_disk.RESERVATION_S) -> None:  # fmt: skip
        self.store = store
        self.limit_mb = limit_mb
        self.memory_mb = memory_mb
        #: How long a place is held at a time: renewed while its copy runs.
        self.hold_s = hold_s

    async def measured(self, provider: object, instance_id: str, source_id: str,
                       machine: bool) -> int:  # fmt: skip
        """What ``source_id`` (a machine, or a snapshot) takes now; a machine's home is
        counted as measured."""
        meter = capability(provider, DiskMeter)
        if meter is None:
            return 0
        took = await meter.disk_bytes(source_id)
        if machine:
            await self.store.disk.settle(instance_id, store_disk.home(source_id), took)
        return took

    async def memory_bytes(self, machine: Machine) -> int:
        return await self.memory_mb(machine) * MB

    @asynccontextmanager
    async def held(self, instance_id: str, field: str, need: int, what: str,
                   keep: bool = True) -> AsyncIterator[None]:  # fmt: skip
        """``need`` bytes held as ``field`` while the body makes the copy: given back if it
        fails (DiskLimit, and the body never runs, past the limit); ``keep`` False: given
        back after it too (the caller settles what it took). The place is renewed while the
        body runs: this process gone, it lapses within ``hold_s``."""
        await self.store.disk.reserve(instance_id, field, need, self.limit_mb, what, self.hold_s)
        renewing = Ticker(
            self.hold_s / 3,
            name=f"disk-renew:{field}",
            failed_event="disk.renew_failed",
            tick=partial(self.store.disk.renew, instance_id, field, self.hold_s),
        )
        try:
            async with renewing:
                yield
        except BaseException:
            await self.store.disk.forget(instance_id, field)
            raise
        if not keep:
            await self.store.disk.forget(instance_id, field)

    async def took(self, provider: object, instance_id: str, field: str, source_id: str) -> None:
        """``field`` holds what ``source_id``'s copy took, measured (nothing: it is gone)."""
        meter = capability(provider, DiskMeter)
        took = 0 if meter is None else await meter.disk_bytes(source_id)
        if took == 0:
            await self.store.disk.forget(instance_id, field)
            return
        await self.store.disk.settle(instance_id, field, took)
        log.info("disk.settled", instance_id=instance_id, field=field, mb=took // MB)


def disk_budget(store: Store, settings: Settings) -> DiskBudget:
    """The process's budget: FLEET_INSTANCE_DISK_MB, and each machine's memory limit."""

    async def memory_mb(machine: Machine) -> int:
        return (await machine_limits(store, settings, machine)).memory_mb

    return DiskBudget(store, settings.instance_disk_mb, memory_mb)
