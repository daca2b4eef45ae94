"""`fleet machines top` and `fleet machines metrics`: what machines use (docs/monitoring.md).

top shows the latest sample of every machine the token reaches (``machines.list`` carries it),
busiest first; metrics prints one machine's samples, oldest first."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, command, emit
from fleet.cli.render import table

if TYPE_CHECKING:
    from contracts.models import Machine, MachineSample
    from fleet.client import FleetClient

Args = argparse.Namespace
#: What top sorts by, and how a sample's value is had (a machine without one comes last).
SORTS: dict[str, Callable[[MachineSample], float | None]] = {
    "cpu": lambda s: s.cpu_cores,
    "memory": lambda s: s.memory_bytes,
    "disk": lambda s: s.disk_bytes,
    "net": lambda s: (s.net_in_bytes or 0) + (s.net_out_bytes or 0),
}


def register(g: SubAction) -> None:
    top = command(g, "top", _top, "every machine's latest CPU, memory, disk and network, busiest "
                  "first")  # fmt: skip
    top.add_argument("--instance", help="only this instance's machines")
    top.add_argument("--sort", choices=sorted(SORTS), default="cpu", help="default: cpu")
    m = command(g, "metrics", _metrics, "one machine's samples, oldest first")
    m.add_argument("machine_id")
    m.add_argument("--since", type=float, default=3600.0,
                   help="seconds back (default: the last hour)")  # fmt: skip
    m.add_argument("--step", type=int, help="seconds a sample covers (default: as kept)")


async def _top(c: FleetClient, a: Args) -> int:
    machines = await c.list_machines(a.instance)
    key = SORTS[a.sort]

    def busy(m: Machine) -> tuple[bool, float]:
        value = None if m.metrics is None else key(m.metrics)
        return value is None, -(value or 0)

    ranked = sorted((m for m in machines if m.metrics is not None), key=busy)
    return emit(a, ranked, lambda: top_table(ranked))


def top_table(machines: list[Machine]) -> str:
    rows = [[m.id, m.instance_id, m.status.value, *_cells(m.metrics)]
            for m in machines if m.metrics is not None]  # fmt: skip
    if not rows:
        return "no machine has a sample of the last minute (none runs, or none was sampled yet)"
    return table(rows, ["ID", "INSTANCE", "STATUS", *_HEADS])


async def _metrics(c: FleetClient, a: Args) -> int:
    got = await c.machine_metrics(a.machine_id, since=time.time() - a.since, step=a.step)
    rows = [[time.strftime("%H:%M:%S", time.localtime(s.at)), *_cells(s)] for s in got.samples]
    return emit(a, got, lambda: table(rows, ["AT", *_HEADS]) if rows else "no samples")


_HEADS = ["CPU", "MEMORY", "LIMIT", "DISK", "NET IN/S", "NET OUT/S"]


def _cells(s: MachineSample | None) -> list[str]:
    if s is None:
        return ["-"] * len(_HEADS)
    cpu = "-" if s.cpu_cores is None else f"{s.cpu_cores:.2f}"

    def rate(n: int | None) -> str:
        return "-" if n is None else _size(n / s.step_s)

    return [cpu, _size(s.memory_bytes), _size(s.memory_limit_bytes), _size(s.disk_bytes),
            rate(s.net_in_bytes), rate(s.net_out_bytes)]  # fmt: skip


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:.0f} B"
    n /= 1024
    units = ["KiB", "MiB", "GiB"]
    while n >= 1024 and len(units) > 1:
        n /= 1024
        units.pop(0)
    return f"{n:.1f} {units[0]}"
