"""The host's sampler of its machines' usage (docs/monitoring.md): every
``FLEET_METRICS_SAMPLE_S`` (5 s) of the provisioner's clock, each machine this host runs is read
(providers/machine_usage.py, through its provider's ``usage``) and a sample of what it used
since the last reading stored (``store.metrics``): CPU cores (its CPU time over the wall time),
memory, network bytes in and out; its home's disk about once a minute (providers/disk_walk.py:
its file system's figure, or a bounded walk charged to the machine), carried in the samples
between. A machine's first reading only starts its counts.

A sample's time is the sampling grid's (a multiple of the interval), so that the samples of
two provisioner replicas of one host meet in the store, which keeps the first. Each minute's
samples also make the minute's sample of the day-long series
(controlplane/process/metrics_series.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.errors import FleetError
from contracts.gateway.metrics import COARSE_STEP_S
from contracts.models import Machine, MachineSample
from contracts.status import ARCHIVED_OR_ARCHIVING, PAUSE_STATES, STOPPED_OR_STOPPING
from controlplane.process.metrics_series import aggregate, bucket_end
from controlplane.store import Store
from providers.base import UsageMeter, capability
from providers.machine_usage import Usage

log = structlog.get_logger(__name__)
#: A machine's home is measured for its disk use this often by default (the samples between
#: carry it): FLEET_METRICS_DISK_S.
DISK_EVERY_S = 60.0
#: Machines read at once.
CONCURRENCY = 8
#: Statuses in which a machine runs nothing to sample.
ASLEEP = PAUSE_STATES | STOPPED_OR_STOPPING | ARCHIVED_OR_ARCHIVING


@dataclass(frozen=True)
class Reading:
    """A machine's counters as read at ``mono`` (the clock's monotonic seconds)."""

    mono: float
    usage: Usage
    #: When its disk was last measured (monotonic seconds).
    disk_at: float


def sample(prev: Reading, now: Reading, at: float) -> MachineSample:
    """What the machine used between two readings, as a sample ending at ``at``."""
    step = now.mono - prev.mono
    a, b = prev.usage, now.usage
    cpu = None
    if a.cpu_ns is not None and b.cpu_ns is not None and step > 0 and b.cpu_ns >= a.cpu_ns:
        cpu = round((b.cpu_ns - a.cpu_ns) / (step * 1e9), 4)
    return MachineSample(
        at=at, step_s=round(step, 3), cpu_cores=cpu,
        memory_bytes=b.memory_bytes, memory_limit_bytes=b.memory_limit_bytes,
        disk_bytes=b.disk_bytes, disk_limit_bytes=b.disk_limit_bytes,
        net_in_bytes=_delta(a.net_in_bytes, b.net_in_bytes),
        net_out_bytes=_delta(a.net_out_bytes, b.net_out_bytes),
    )  # fmt: skip


def _delta(before: int | None, after: int | None) -> int | None:
    if before is None or after is None or after < before:  # restarted: its counters too
        return None
    return after - before


class UsageSampler(Ticker):
    name = "usage-sampler"
    failed_event = "metrics.sample_failed"

    def __init__(self, store: Store, providers: Mapping[str, object], host_id: str,
                 step_s: float, clock: Clock = SYSTEM_CLOCK,
                 disk_every_s: float = DISK_EVERY_S) -> None:  # fmt: skip
        super().__init__(step_s, clock, at_once=True)
        self._disk_every_s = disk_every_s
        self._store = store
        self._providers = providers
        self._host_id = host_id
        self._step_s = step_s
        self._last: dict[str, Reading] = {}
        #: Each machine's samples of the minute under way (the day series's next sample).
        self._minute: dict[str, list[MachineSample]] = {}

    async def tick(self) -> None:
        machines = await self._machines()
        at = round(self.clock.now() / self._step_s) * self._step_s
        limit = asyncio.Semaphore(CONCURRENCY)

        async def read(m: Machine) -> tuple[str, Reading | None]:
            async with limit:
                return m.id, await self._read(m)

        readings = dict(await asyncio.gather(*(read(m) for m in machines)))
        fine: dict[str, MachineSample] = {}
        for mid, now in readings.items():
            prev = self._last.pop(mid, None)
            if now is None:
                continue
            self._last[mid] = now
            if prev is not None:
                fine[mid] = sample(prev, now, at)
        for gone in set(self._last) - set(readings):
            del self._last[gone]
        await self._store.metrics.add("fine", fine)
        await self._store.metrics.add("coarse", self._minutes(fine))

    async def _machines(self) -> list[Machine]:
        """This host's machines that may run something."""
        running = (await self._store.hosts.occupancy(self._host_id)).running
        found = await asyncio.gather(*(self._store.get_machine(m) for m in sorted(running)),
                                     return_exceptions=True)  # fmt: skip
        return [m for m in found if isinstance(m, Machine) and m.status not in ASLEEP]

    async def _read(self, m: Machine) -> Reading | None:
        meter = capability(self._providers.get(m.provider), UsageMeter)
        if meter is None:
            return None
        mono = self.clock.monotonic()
        prev = self._last.get(m.id)
        disk = prev is None or mono - prev.disk_at >= self._disk_every_s
        try:
            usage = await meter.usage(m.id, disk=disk)
        except (FleetError, OSError) as exc:
            log.warning("metrics.read_failed", machine_id=m.id, error=repr(exc))
            return None
        if usage is None:
            return None
        # Carried until its next measure, and past one that gave nothing (a walk killed at its
        # bound of time): the last figure, never none.
        if prev is not None and (not disk or usage.disk_bytes is None):
            usage = usage.with_disk(prev.usage.disk_bytes, prev.usage.disk_limit_bytes)
        return Reading(mono, usage, mono if disk else prev.disk_at if prev else mono)

    def _minutes(self, fine: dict[str, MachineSample]) -> dict[str, MachineSample]:
        """The minute samples that ``fine`` completes: a machine's sample of a new minute
        closes the one before."""
        done: dict[str, MachineSample] = {}
        for mid, s in fine.items():
            held = self._minute.setdefault(mid, [])
            if held and bucket_end(held[0].at, COARSE_STEP_S) != bucket_end(s.at, COARSE_STEP_S):
                done[mid] = aggregate(held, COARSE_STEP_S)[0]
                held.clear()
            held.append(s)
        for gone in set(self._minute) - set(self._last):
            del self._minute[gone]
        return done
