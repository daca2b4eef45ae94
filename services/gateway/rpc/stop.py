"""``machines.stop``, ``machines.start``, ``machines.pause``, ``machines.resume``,
``instances.setAutoStop``/``getAutoStop`` (contracts/gateway/stop.py). A start and a resume
pass the instance's running limit and the host's room (services/gateway/rpc/admission.py)."""

from __future__ import annotations

import structlog

from contracts.bus.events import WakeBy
from contracts.errors import Conflict, NeverStarted, NotSupported
from contracts.gateway.stop import (
    INSTANCES_GET_AUTOSTOP,
    INSTANCES_SET_AUTOSTOP,
    MACHINES_PAUSE,
    MACHINES_RESUME,
    MACHINES_START,
    MACHINES_STOP,
    AutoStop,
    SetAutoStopParams,
)
from contracts.gateway.types import InstanceRef, MachineRef
from contracts.models import Machine
from contracts.rpc.jsonrpc import handles
from contracts.status import (
    ARCHIVED_OR_ARCHIVING,
    PAUSABLE,
    PAUSE_STATES,
    RESUMED_OR_RESUMING,
    STARTABLE,
    STOPPABLE,
    STOPPED_OR_STOPPING,
    MachineStatus as S,
)
from controlplane.bus import Bus
from controlplane.machines.status_transitions import pause_machine, stop_machine
from controlplane.policy import keeps_memory
from controlplane.store import AutoStopRule, Store
from services.gateway.auth import Access, Caller
from services.gateway.rpc.admission import wake_up

log = structlog.get_logger(__name__)


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
        if machine.status in ARCHIVED_OR_ARCHIVING:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}: its files are gone (make a "
                "new one with machines.create or machines.rebuild)",
                data={"status": machine.status.value},
            )
        if machine.status is S.FAILED and machine.external_id is None:
            raise NeverStarted(
                f"machine {machine.id} failed before its provider started it ("
                f"{machine.status_reason}): it has no home to start; machines.rebuild makes a "
                "new machine in its place (or machines.archive, then machines.create)",
                data={"status": machine.status.value},
            )
        if machine.status not in STARTABLE | {S.BOOTING}:
            return machine  # running, or on its way up after a create: nothing to do
        await wake_up(self.store, self.bus, machine, "started by request", WakeBy.REQUEST)
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
        if machine.status not in PAUSABLE:
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
        if machine.status in RESUMED_OR_RESUMING:
            return machine  # running, or on its way back: nothing to do
        if machine.status is not S.PAUSED:
            raise Conflict(
                f"machine {machine.id} is {machine.status.value}; only a paused machine can be "
                "resumed" + (" (wait until it is paused)" if machine.status in PAUSE_STATES
                             else ""),
                data={"status": machine.status.value},
            )  # fmt: skip
        await wake_up(self.store, self.bus, machine, "resumed by request", WakeBy.REQUEST)
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
