"""``machines.stop``, ``machines.start``, ``instances.setAutoStop``/``getAutoStop``
(contracts/gateway_stop.py), and the running-machines limit a start or a create must pass."""

from __future__ import annotations

import structlog

from contracts.errors import Conflict, HostFull, NotSupported, RunningMachinesLimit, Unavailable
from contracts.events import WakeBy
from contracts.gateway_stop import (
    INSTANCES_GET_AUTOSTOP,
    INSTANCES_SET_AUTOSTOP,
    MACHINES_PAUSE,
    MACHINES_RESUME,
    MACHINES_START,
    MACHINES_STOP,
    AutoStop,
    SetAutoStopParams,
)
from contracts.gateway_types import InstanceRef, MachineRef
from contracts.jsonrpc import handles
from contracts.models import Machine
from contracts.status import (
    PAUSE_STATES,
    STOPPABLE,
    STOPPED_OR_STOPPING,
    TERMINAL,
    MachineStatus as S,
)
from controlplane.bus import Bus
from controlplane.status_transitions import (
    pause_machine,
    resume_machine,
    start_machine,
    stop_machine,
)
from controlplane.store import Store
from controlplane.store_stages import Transition
from controlplane.store_stop import AutoStopRule
from providers.runtimes import keeps_memory
from services.gateway.access import Access, Caller

log = structlog.get_logger(__name__)


async def check_running_limit(
    store: Store, instance_id: str, starting: str | None, adding: int = 1
) -> None:
    """Refuse a start (of ``starting``) or a create (None) of ``adding`` machines that would
    pass the instance's ``maxRunningMachines``. Stopped, paused, failed and archived machines
    do not count."""
    limit = (await store.instance_settings.limits(instance_id)).max_running_machines
    if limit is None:
        return
    machines = await store.list_machines(instance_id)
    not_running = TERMINAL | STOPPED_OR_STOPPING | {S.PAUSED}
    running = [m for m in machines if m.status not in not_running and m.id != starting]
    if len(running) + adding > limit:
        raise RunningMachinesLimit(
            f"instance {instance_id} may run {limit} machine(s) at once and runs "
            f"{len(running)}: stop one first, or ask the admin to raise maxRunningMachines",
            data={"limit": limit, "running": len(running)},
        )


async def check_host_room(store: Store, machine: Machine) -> None:
    """Refuse a start that would take the machine's host past its capacity, or that comes while
    the host is below its memory floor (as of its last heartbeat): a create is placed by a
    host's pull only while it has room (docs/hosts.md), and a start must not go around that.
    The machine's home is on that host: no provider can start it elsewhere."""
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


async def start_checked(store: Store, bus: Bus, machine: Machine, reason: str,
                        by: WakeBy) -> Transition:  # fmt: skip
    """Start a stopped (or stopping) machine once it passes its instance's running limit and
    its host's room (``machines.start`` and a wake on access); a booting one's start is only
    published again."""
    if machine.status not in STOPPED_OR_STOPPING:
        return await start_machine(store, bus, machine.id, reason, by)
    # One start per host at a time, from any gateway: each counts the others' machines
    # once they are booting, so two cannot both take the host's last place.
    host = machine.host_id or "-"
    async with store.locks.hold_waiting(f"host-start:{host}", ttl_s=10, wait_s=5) as held:
        if not held:
            raise Unavailable(f"another start on host {host} holds its place; retry")
        status = (await store.get_machine(machine.id)).status
        if status not in STOPPED_OR_STOPPING:  # another call started it while this one waited
            return Transition(accepted=False, previous=status, target=S.BOOTING)
        await check_running_limit(store, machine.instance_id, machine.id)
        await check_host_room(store, machine)
        return await start_machine(store, bus, machine.id, reason, by)


class StopOps:
    def __init__(self, *, store: Store, bus: Bus, access: Access) -> None:
        self.store = store
        self.bus = bus
        self.access = access

    @handles(MACHINES_STOP)
    async def machines_stop(self, p: MachineRef, c: Caller) -> Machine:
        machine = await self.access.machine(c, p.machine_id)
        if machine.status not in STOPPABLE | STOPPED_OR_STOPPING | {S.PAUSED}:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a booted machine can be "
                "stopped",
                data={"status": machine.status.value},
            )
        await stop_machine(self.store, self.bus, machine.id, "stopped by request")
        return await self.access.machine(c, p.machine_id)

    @handles(MACHINES_START)
    async def machines_start(self, p: MachineRef, c: Caller) -> Machine:
        machine = await self.access.machine(c, p.machine_id)
        if machine.status in TERMINAL:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a stopped machine can be "
                "started (make a new one with machines.create or machines.rebuild)",
                data={"status": machine.status.value},
            )
        if machine.status not in STOPPED_OR_STOPPING | {S.BOOTING}:
            return machine  # running, or on its way up after a create: nothing to do
        await start_checked(self.store, self.bus, machine, "started by request", WakeBy.REQUEST)
        return await self.access.machine(c, p.machine_id)

    @handles(MACHINES_PAUSE)
    async def machines_pause(self, p: MachineRef, c: Caller) -> Machine:
        machine = await self.access.machine(c, p.machine_id)
        if machine.runtime != "gvisor":
            raise NotSupported(
                f"machine {machine.id} runs the {machine.runtime} runtime, which cannot keep a "
                "machine's memory: only a gvisor machine can be paused (docs/runtimes.md)",
                data={"runtime": machine.runtime},
            )
        if not keeps_memory(machine.runtime, machine.provider):
            raise NotSupported(
                f"machine {machine.id} runs on the {machine.provider} provider, whose gvisor "
                "machines cannot be paused with their memory (docs/limitations.md): stop it",
                data={"runtime": machine.runtime, "provider": machine.provider},
            )
        if machine.status not in {S.READY, S.PAUSING, S.PAUSED}:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a ready machine can be "
                "paused",
                data={"status": machine.status.value},
            )
        await pause_machine(self.store, self.bus, machine.id, "paused by request")
        return await self.access.machine(c, p.machine_id)

    @handles(MACHINES_RESUME)
    async def machines_resume(self, p: MachineRef, c: Caller) -> Machine:
        machine = await self.access.machine(c, p.machine_id)
        if machine.status in {S.READY, S.RESUMING}:
            return machine  # running, or on its way back: nothing to do
        if machine.status is not S.PAUSED:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a paused machine can be "
                "resumed" + (" (wait until it is paused)" if machine.status in PAUSE_STATES
                             else ""),
                data={"status": machine.status.value},
            )  # fmt: skip
        await resume_machine(self.store, self.bus, machine.id, WakeBy.REQUEST)
        return await self.access.machine(c, p.machine_id)

    @handles(INSTANCES_SET_AUTOSTOP)
    async def instances_set_autostop(self, p: SetAutoStopParams, c: Caller) -> AutoStop:
        await self.access.instance_exists(c, p.instance_id)
        # Off forgets the action too: a later setting starts from the default.
        action = p.action if p.idle_after_s else None
        await self.store.stops.set_autostop(p.instance_id, AutoStopRule(p.idle_after_s, action))
        log.info("instance.autostop_set", instance_id=p.instance_id, idle_after_s=p.idle_after_s,
                 action=action, by=c.token_id)  # fmt: skip
        return AutoStop(instance_id=p.instance_id, idle_after_s=p.idle_after_s, action=action)

    @handles(INSTANCES_GET_AUTOSTOP)
    async def instances_get_autostop(self, p: InstanceRef, c: Caller) -> AutoStop:
        await self.access.instance_exists(c, p.instance_id)
        rule = await self.store.stops.autostop(p.instance_id)
        return AutoStop(instance_id=p.instance_id, idle_after_s=rule.idle_after_s,
                        action=rule.action)  # fmt: skip
