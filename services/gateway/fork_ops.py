"""``machines.fork``: new machines of the source's instance, each starting with the source's home
as of one instant (the provisioner copies it: providers/homes_fs.py)."""

from __future__ import annotations

import structlog

from contracts.errors import Conflict
from contracts.events import MachineCreated
from contracts.gateway_fork import ForkedMachines, ForkMachineParams
from contracts.ids import new_event_id
from contracts.models import Machine
from contracts.status import STOPPABLE, STOPPED_OR_STOPPING, MachineStatus as S
from services.common.bus import Bus
from services.common.store import Store
from services.gateway.access import Access, Caller
from services.gateway.stop_ops import check_running_limit

log = structlog.get_logger(__name__)

#: A machine whose home is there to copy: booted (running), or stopped.
FORKABLE = STOPPABLE | STOPPED_OR_STOPPING


class ForkOps:
    def __init__(self, *, store: Store, bus: Bus, access: Access) -> None:
        self.store = store
        self.bus = bus
        self.access = access

    async def machines_fork(self, p: ForkMachineParams, c: Caller) -> ForkedMachines:
        source = await self.access.machine(c, p.machine_id)
        if source.status not in FORKABLE:
            raise Conflict(
                f"machine {source.id} is {source.status.value}; only a booted or stopped machine "
                "can be forked",
                data={"status": source.status.value},
            )
        await check_running_limit(self.store, source.instance_id, None, p.count)
        forks = [
            await new_machine(self.store, self.bus, source.instance_id, source.provider, source.id)
            for _ in range(p.count)
        ]
        log.info("machine.forked", machine_id=source.id, forks=[m.id for m in forks])
        return ForkedMachines(machines=forks)


async def new_machine(
    store: Store, bus: Bus, instance_id: str, provider: str, fork_of: str | None = None
) -> Machine:
    """A machine made and announced (``machine.created``): the instance's current one, or a
    fork of ``fork_of`` (one more machine of the instance)."""
    machine = await store.create_machine(instance_id, provider, current=fork_of is None)
    event = MachineCreated(
        event_id=new_event_id(),
        machine_id=machine.id,
        instance_id=instance_id,
        provider=provider,
        fork_of=fork_of,
    )
    try:
        await bus.publish(event)
    except Exception as exc:  # the record exists; say why it will not move
        await store.transition(machine.id, S.FAILED, f"could not publish event: {exc}")
        raise
    log.info("machine.created", machine_id=machine.id, instance_id=instance_id, fork_of=fork_of)
    return machine
