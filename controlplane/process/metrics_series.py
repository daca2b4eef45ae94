"""Machines' samples merged into longer steps (contracts/gateway/metrics.py): the provisioner's
minute series is made of its samples this way, and ``machines.metrics`` answers a longer step
so. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable

from contracts.models import MachineSample


def bucket_end(at: float, step_s: float) -> float:
    """The end of the step-long bucket a sample taken at ``at`` falls in (a sample at a
    bucket's end is its last)."""
    return math.ceil(at / step_s - 1e-9) * step_s


def aggregate(samples: Iterable[MachineSample], step_s: float) -> list[MachineSample]:
    """``samples`` (oldest first) merged into buckets of ``step_s``, oldest first: CPU and
    memory the mean over the bucket (weighted by each sample's step), the limits and the disk
    the last known, network bytes summed."""
    buckets: dict[float, list[MachineSample]] = {}
    for s in samples:
        buckets.setdefault(bucket_end(s.at, step_s), []).append(s)
    return [_merge(end, step_s, group) for end, group in sorted(buckets.items())]


def _merge(end: float, step_s: float, group: list[MachineSample]) -> MachineSample:
    return MachineSample(
        at=end,
        step_s=step_s,
        cpu_cores=_mean([(s.cpu_cores, s.step_s) for s in group]),
        memory_bytes=_int(_mean([(s.memory_bytes, s.step_s) for s in group])),
        memory_limit_bytes=_last(s.memory_limit_bytes for s in group),
        disk_bytes=_last(s.disk_bytes for s in group),
        disk_limit_bytes=_last(s.disk_limit_bytes for s in group),
        net_in_bytes=_sum(s.net_in_bytes for s in group),
        net_out_bytes=_sum(s.net_out_bytes for s in group),
    )


def _mean(values: list[tuple[float | int | None, float]]) -> float | None:
    known = [(v, w) for v, w in values if v is not None]
    weight = sum(w for _, w in known)
    if not known or weight <= 0:
        return None
    return round(sum(v * w for v, w in known) / weight, 4)


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def _last(values: Iterable[int | None]) -> int | None:
    found = None
    for v in values:
        if v is not None:
            found = v
    return found


def _sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
