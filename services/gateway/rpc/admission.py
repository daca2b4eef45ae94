"""The one way into running: every call that makes a machine run (``machines.create``,
``machines.rebuild``, ``machines.fork``, a create from a snapshot, ``machines.start``,
``machines.resume`` and a wake on access) passes the instance's ``maxRunningMachines`` and,
for a machine that has a host, that host's room, in ``admitted``.

The count and the call's status change (or new records) are one step: the instance's lock, and
for a machine the lock of its host, are held across both, from any gateway replica. So of calls
at once on any of these paths, no two take the same last place; the instance's lock covers
machines on different hosts, the host's lock machines of different instances on one host.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from contracts.bus.events import WakeBy
from contracts.errors import HostFull, RunningMachinesLimit, Unavailable
from contracts.models import Machine
from contracts.status import NOT_RUNNING, WAKEABLE, MachineStatus as S
from controlplane.bus import Bus
from controlplane.machines.status_transitions import resume_machine, start_machine
from controlplane.store import Store, Transition

#: A lock's life if its holder dies, and how long a call waits for another's turn. A holder
#: counts, then writes a status or a record (a rebuild also asks the replaced daemon to stop,
#: ``FLEET_STOP_WAIT_S``): well within it.
LOCK_TTL_S = 10.0
LOCK_WAIT_S = 5.0


async def check_running_limit(
    store: Store, instance_id: str, starting: str | None, adding: int = 1
) -> None:
    """Refuse a start (of ``starting``) or a create (None, or the machine it replaces) of
    ``adding`` machines that would pass the instance's ``maxRunningMachines``. Stopped, paused,
    failed and archived machines do not count. Alone, this is a look: only ``admitted`` holds
    the count until the machines are made."""
    limit = (await store.instance_settings.limits(instance_id)).max_running_machines
    if limit is None:
        return
    machines = await store.list_machines(instance_id)
    running = [m for m in machines if m.status not in NOT_RUNNING and m.id != starting]
    if len(running) + adding > limit:
        raise RunningMachinesLimit(
            f"instance {instance_id} may run {limit} machine(s) at once and runs "
            f"{len(running)}: stop or pause one first, or ask the admin to raise "
            "maxRunningMachines",
            data={"limit": limit, "running": len(running)},
        )


async def check_host_room(store: Store, machine: Machine) -> None:
    """Refuse a start or a resume that would take the machine's host past its capacity, or that
    comes while the host is below its memory floor (as of its last heartbeat): a create is
    placed by a host's pull only while it has room (docs/hosts.md), and a start must not go
    around that. The machine's home is on that host: no provider can start it elsewhere."""
    host = None if machine.host_id is None else await store.hosts.record(machine.host_id)
    if host is None:
        return
    running = len(host.occupancy.running - {machine.id})
    full = bool(host.capacity) and running >= host.capacity
    if full or host.memory_low:
        why = (f"runs {running} of its capacity of {host.capacity}" if full
               else "is below its memory floor (FLEET_HOST_MIN_AVAILABLE_MB)")  # fmt: skip
        raise HostFull(
            f"machine {machine.id}'s host {host.host_id} {why}; its home stays there: stop "
            "another of its machines, or rebuild this one (a new machine on a host with room)",
            data={"hostId": host.host_id, "capacity": host.capacity or None, "running": running,
                  "memoryLow": host.memory_low},
        )  # fmt: skip


@contextlib.asynccontextmanager
async def _held(store: Store, name: str, what: str) -> AsyncIterator[None]:
    async with store.locks.hold_waiting(name, ttl_s=LOCK_TTL_S, wait_s=LOCK_WAIT_S) as held:
        if not held:
            raise Unavailable(f"other starts {what} hold its place for now; retry")
        yield


@contextlib.asynccontextmanager
async def admitted(
    store: Store, instance_id: str, *, machine: Machine | None = None, adding: int = 1,
    replacing: str | None = None,
) -> AsyncIterator[bool]:  # fmt: skip
    """The block that makes ``adding`` machines of the instance run, entered only within its
    ``maxRunningMachines`` (else RunningMachinesLimit, and the block does not run). The block
    must make them count (a new record, a status out of ``NOT_RUNNING``) before it ends, and be
    short: other starts of the instance wait for it.

    ``machine``: a stopped or paused machine the block starts or resumes. Its host's room is
    checked too (HostFull), and its status is read again under the locks: it yields False (and
    checks nothing) when another call has moved it meanwhile, True otherwise. ``replacing``: a
    machine a rebuild archives, which no longer counts."""
    async with contextlib.AsyncExitStack() as locks:
        await locks.enter_async_context(
            _held(store, f"instance-start:{instance_id}", f"of instance {instance_id}")
        )
        if machine is not None:
            host = machine.host_id or "-"
            await locks.enter_async_context(_held(store, f"host-start:{host}", f"on host {host}"))
            now = (await store.get_machine(machine.id)).status
            # Let through only while its status (read again under the locks) is still in the
            # same one of the groups a start or a resume wakes a machine from.
            if not any(machine.status in group and now in group for group in WAKEABLE):
                yield False
                return
        await check_running_limit(
            store, instance_id, replacing if machine is None else machine.id, adding
        )
        if machine is not None:
            await check_host_room(store, machine)
        yield True


async def wake_up(store: Store, bus: Bus, machine: Machine, reason: str,
                  by: WakeBy) -> Transition | None:  # fmt: skip
    """Resume a paused machine, or start a stopped (or stopping) one, once ``admitted``
    (``machines.resume``, ``machines.start``, a wake on access); a booting one's start is only
    published again. ``reason``: a start's (a resume's says ``by``). None: another call moved
    it meanwhile (nothing done)."""
    if not any(machine.status in group for group in WAKEABLE):
        return await start_machine(store, bus, machine.id, reason, by)
    async with admitted(store, machine.instance_id, machine=machine) as still:
        if not still:
            return None
        if machine.status is S.PAUSED:
            return await resume_machine(store, bus, machine.id, by)
        return await start_machine(store, bus, machine.id, reason, by)
