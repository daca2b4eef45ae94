"""A ready machine whose daemon does not serve is ``unresponsive``, and its daemon's next
heartbeat (a daemon beats only once it serves) makes it ``ready`` again (services/prober/
liveness.py). The prober marks machines whose beats stopped; whoever ends or starts a daemon
anew marks its machine at once, so that no machine reads ``ready`` while no daemon serves it:
`fleet up` for the machines whose daemons it ends (``daemons_ended``), a provisioner for the
machines whose daemons it starts again (``mark_unresponsive``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from contracts.bus.events import MachineUnresponsive
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from controlplane.process.stage import connect
from controlplane.settings import Settings
from controlplane.store import Store


async def mark_unresponsive(
    store: Store, machine_id: str, reason: str, last: float | None = None
) -> MachineUnresponsive | None:
    """A ready machine ``unresponsive`` (its next beat makes it ready again); its event to
    publish, or None if it was not ready. ``last``: its last beat, if known."""
    t = await store.transition(machine_id, S.UNRESPONSIVE, reason)
    if not t.moved:
        return None
    await store.heartbeats.mark_unresponsive(machine_id)
    if last is None:
        last = await store.heartbeats.last_beat(machine_id) or time.time()
    return MachineUnresponsive(
        event_id=new_event_id(), machine_id=machine_id, reason=reason,
        last_heartbeat_at=datetime.fromtimestamp(last, UTC),
    )  # fmt: skip


async def daemons_ended(
    settings: Settings, hosts: Collection[str | None], reason: str, timeout_s: float = 30.0
) -> int:
    """The ready machines of ``hosts`` (None: machines recorded with no host), whose daemons
    were all ended, marked unresponsive; how many. TimeoutError after ``timeout_s`` (a store
    or bus out of reach must not hold up whoever ended them)."""
    async with asyncio.timeout(timeout_s), AsyncExitStack() as stack:
        store, bus = await connect(settings, stack, "daemons-ended")
        marked: list[MachineUnresponsive] = []
        for machine in await store.list_machines():
            if machine.host_id not in hosts or machine.status is not S.READY:
                continue
            if event := await mark_unresponsive(store, machine.id, reason):
                marked.append(event)
        await bus.publish_many(marked)
        return len(marked)
