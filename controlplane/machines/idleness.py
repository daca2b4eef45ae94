"""How long a machine has been idle: the one notion of idleness that auto-stop (the prober's
``services.prober.autostop``) and memory pressure (the provisioner's
``services.provisioner.memory_pressure``) both go by, so that the machine auto-pause would pause
next is the one memory pressure pauses first.

Idle means no gateway activity (``services.gateway.auth.activity``: exec, terminal input, file or
port traffic, codemode calls; a resume or a start counts as activity). Background processes and cron
jobs are not activity: the daemon never reports them. A machine with no recorded activity yet
starts its clock at the first look (of either), so it is never taken for idle since forever.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.store import Store

#: Only a machine that is up is stopped for idleness: one on its way up has had no chance.
IDLE_CANDIDATES = frozenset({S.READY, S.UNRESPONSIVE})


async def last_activity(store: Store, machines: list[Machine], now: float) -> dict[str, float]:
    """When each of ``machines`` last had gateway activity (epoch seconds); the clock of one
    with none yet starts ``now``, and is recorded so."""
    last = await store.stops.last_activity([m.id for m in machines])
    unseen = {m.id: now for m in machines if last.get(m.id) is None}
    await store.stops.record_activity(unseen)
    return {m.id: unseen.get(m.id) or last[m.id] or now for m in machines}


def idle_machines(
    machines: list[Machine], last: Mapping[str, float | None], idle_after_s: float, now: float
) -> list[Machine]:
    """The machines whose last activity is ``idle_after_s`` or more ago (None: unknown)."""
    return [
        m for m in machines
        if m.status in IDLE_CANDIDATES and (seen := last.get(m.id)) is not None
        and now - seen >= idle_after_s
    ]  # fmt: skip


def longest_idle_first(machines: list[Machine], last: dict[str, float]) -> list[Machine]:
    """``machines`` by their last activity, the oldest first (ties by id: a stable order)."""
    return sorted(machines, key=lambda m: (last.get(m.id, 0.0), m.id))
