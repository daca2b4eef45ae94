"""``machines.metrics``: what a machine used, sample by sample (docs/monitoring.md).

The provisioner of a machine's host samples each of its running machines every
``FLEET_METRICS_SAMPLE_S`` (5 s): CPU, memory, disk and network, from the machine's cgroup on
the local provider (runsc's own memory figure on gvisor), from the engine's stats on docker.
The store keeps two bounded series a machine: every sample for ``FINE_KEEP_S`` (an hour), and a
sample a minute (each the minute's samples aggregated) for ``COARSE_KEEP_S`` (a day).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import Forbidden, NotFound
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.models import MachineSample
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
#: How long each sample is kept, and the coarse series's step and how long it is kept.
FINE_KEEP_S = 3600
COARSE_STEP_S = 60
COARSE_KEEP_S = 24 * 3600
#: The most samples one answer holds (a day at a minute each).
MAX_SAMPLES = COARSE_KEEP_S // COARSE_STEP_S


class MachineMetricsParams(Params, kw_only=True):
    machine_id: _MachineId
    #: Samples after this time (epoch seconds); by default the last hour's.
    since: Annotated[float, msgspec.Meta(ge=0)] | None = None
    #: Seconds a sample of the answer covers (the stored ones aggregated): by default the
    #: sampling interval within the last hour, a minute before it. A multiple of the
    #: sampling interval (of a minute, for samples older than an hour).
    step: Annotated[int, msgspec.Meta(ge=1, le=COARSE_KEEP_S)] | None = None


class MachineMetrics(Result, kw_only=True):
    machine_id: str
    #: The step of the answer's samples, seconds.
    step_s: float
    #: Oldest first.
    samples: list[MachineSample]


MACHINES_METRICS: MethodSpec[MachineMetricsParams, MachineMetrics] = MethodSpec(
    "machines.metrics", MachineMetricsParams, MachineMetrics,
    "A machine's CPU, memory, disk and network, sample by sample (every 5 s for the last "
    "hour, a minute each for the last day), oldest first.",
    (NotFound, Forbidden),
    scope="machines:read", reads=True, tool="metrics",
    client=ClientMethod("machine_metrics", "machine_id",
                        doc="since: epoch seconds; step: seconds a sample covers."),
)  # fmt: skip

METRICS_METHODS: tuple[AnySpec, ...] = (MACHINES_METRICS,)
