"""``machines.metrics``: a machine's samples (contracts/gateway/metrics.py), from the series its
host's provisioner keeps in the store (services/provisioner/usage_sampler.py); and the latest
sample that ``machines.get`` and ``machines.list`` carry."""

from __future__ import annotations

import msgspec

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import InvalidParams
from contracts.gateway.metrics import (
    COARSE_KEEP_S,
    COARSE_STEP_S,
    FINE_KEEP_S,
    MACHINES_METRICS,
    MAX_SAMPLES,
    MachineMetrics,
    MachineMetricsParams,
)
from contracts.models import Machine
from contracts.rpc.jsonrpc import handles
from controlplane.process.metrics_series import aggregate
from controlplane.store import Store
from services.gateway.auth import Access, Caller

#: ``machines.get`` carries a sample at most this old (a machine that stopped has none).
LATEST_WITHIN_S = 60.0
#: How far before the hour kept of every sample ``since`` may be and still be answered from it.
SLACK_S = 60.0


class MetricsOps:
    def __init__(self, *, store: Store, access: Access, sample_s: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self.store = store
        self.access = access
        self.sample_s = sample_s
        self.clock = clock

    @handles(MACHINES_METRICS)
    async def machines_metrics(self, p: MachineMetricsParams, c: Caller) -> MachineMetrics:
        await self.access.machine(c, p.machine_id)
        now = self.clock.now()
        since = max(now - COARSE_KEEP_S, now - FINE_KEEP_S if p.since is None else p.since)
        # "The last hour" asked a moment ago (a client's clock) is still the hour's series.
        fine = since >= now - FINE_KEEP_S - SLACK_S
        base = self.sample_s if fine else COARSE_STEP_S
        step = p.step or base
        if step % base:
            raise InvalidParams(f"step {step} is not a multiple of {base:g} s, the step of the "
                                "samples kept for that time", field="$.step")  # fmt: skip
        stored = await self.store.metrics.series(p.machine_id, "fine" if fine else "coarse",
                                                 since)  # fmt: skip
        samples = stored if step == base else aggregate(stored, step)
        return MachineMetrics(machine_id=p.machine_id, step_s=step, samples=samples[-MAX_SAMPLES:])


async def with_latest(store: Store, machines: list[Machine], now: float) -> list[Machine]:
    """``machines``, each with its latest sample (one of the ``LATEST_WITHIN_S`` before
    ``now``) if it has one. One round trip."""
    latest = await store.metrics.latest([m.id for m in machines], now - LATEST_WITHIN_S)
    return [msgspec.structs.replace(m, metrics=latest[m.id]) if m.id in latest else m
            for m in machines]  # fmt: skip
