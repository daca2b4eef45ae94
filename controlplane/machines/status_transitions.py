"""Stopping and starting a machine's record: shared by the gateway (``machines.stop``,
``machines.start``) and the prober's auto-stop, so that both say it the same way.

Both are compare-and-set status changes followed by an event; the provisioner does the
provider's part on that event (``services.provisioner.stop_start``). Only the call that moved the
status publishes: a repeated stop or start is a no-op, never a second event.
"""

from __future__ import annotations

import structlog

from contracts.bus.events import (
    MachinePauseRequested,
    MachineResumeRequested,
    MachineStarted,
    MachineStopped,
    PauseBy,
    WakeBy,
)
from contracts.ids import new_event_id
from contracts.status import STOPPED_OR_STOPPING, MachineStatus as S
from controlplane.bus import Bus
from controlplane.store import Store, Transition

log = structlog.get_logger(__name__)

#: What a caller of a daemon-bound method on a stopped machine is told to do.
START_HINT = "start it with machines.start (fleet machines start {machine_id})"
#: And on a paused one.
RESUME_HINT = "resume it with machines.resume"
#: What the stop that comes before a failed machine's start says.
FAILED_ENDED = "ending what is left of the failed machine first"
#: How a refused pause's status reason begins (the machine runs on, ready).
PAUSE_REFUSED = "pause refused: "


async def stop_machine(store: Store, bus: Bus, machine_id: str, reason: str) -> Transition:
    """Mark the machine stopping and tell the provisioner to end its processes (it marks the
    machine stopped once every one has exited). A repeat whose stop was never carried out (a
    gateway that died between the status and the event) publishes the event again: the
    provisioner's part is idempotent."""
    t = await store.transition(machine_id, S.STOPPING, reason)
    if t.moved:
        # Before the event: the provisioner sets it again once the processes are gone, and
        # a start waits for that (it must not find the old daemon still up).
        await store.stops.pending(machine_id)
    if t.moved or (t.accepted and not await store.stops.done(machine_id)):
        await bus.publish(MachineStopped(event_id=new_event_id(), machine_id=machine_id,
                                         reason=reason))  # fmt: skip
        log.info("machine.stop_requested", machine_id=machine_id, reason=reason)
    return t


async def start_machine(store: Store, bus: Bus, machine_id: str, reason: str,
                        by: WakeBy = WakeBy.REQUEST) -> Transition:  # fmt: skip
    """Move a stopped (or stopping) machine to booting and tell the provisioner to start it
    again, once its stop is carried out. Only such a one: booting also admits provisioning,
    which is a create's business. A failed one is stopped first (``machines.start`` checks
    that its provider made it). ``by``: what asked (``machine.started``'s ``by``)."""
    status = (await store.get_machine(machine_id)).status
    if status is S.FAILED:
        # Its daemon may still run, or its sandbox be left: ended as a stop ends them, a stop
        # this start then overtakes and waits for, as any start right behind its stop does.
        await stop_machine(store, bus, machine_id, f"{reason}: {FAILED_ENDED}")
        # Its new boot's deadline counts from this start, never from the boot that failed.
        await store.boot_watch.forget(machine_id)
        status = (await store.get_machine(machine_id)).status
    if status is S.BOOTING and await store.stops.done(machine_id):
        # A start on its way (or one whose event a dying gateway never published): publishing
        # again is harmless, the provisioner's start is idempotent.
        await bus.publish(MachineStarted(event_id=new_event_id(), machine_id=machine_id,
                                         reason=reason, by=by))  # fmt: skip
        return Transition(accepted=True, previous=status, target=S.BOOTING)
    if status not in STOPPED_OR_STOPPING:  # nothing moves: a stopped one never goes back there
        return Transition(accepted=False, previous=status, target=S.BOOTING)
    t = await store.transition(machine_id, S.BOOTING, f"{reason}: waiting for the daemon",
                               woken_by=by)  # fmt: skip
    if t.moved:
        await store.stops.reset_activity(machine_id)  # its idle time counts from its start
        await bus.publish(MachineStarted(event_id=new_event_id(), machine_id=machine_id,
                                         reason=reason, by=by))  # fmt: skip
        log.info("machine.start_requested", machine_id=machine_id, reason=reason, by=by.value)
    return t


async def pause_machine(
    store: Store, bus: Bus, machine_id: str, reason: str, by: PauseBy = PauseBy.REQUEST
) -> Transition:
    """Mark a ready machine pausing and tell the provisioner to checkpoint it (it marks the
    machine paused once its sandbox is gone). Only the call that moved the status publishes."""
    t = await store.transition(machine_id, S.PAUSING, reason)
    if t.moved:
        await bus.publish(MachinePauseRequested(event_id=new_event_id(), machine_id=machine_id,
                                                reason=reason, by=by))  # fmt: skip
        log.info("machine.pause_requested", machine_id=machine_id, reason=reason, by=by.value)
    return t


async def resume_machine(store: Store, bus: Bus, machine_id: str, by: WakeBy) -> Transition:
    """Mark a paused machine resuming and tell the provisioner to restore it."""
    t = await store.transition(machine_id, S.RESUMING, f"resuming ({by})", woken_by=by)
    if t.moved:
        await store.stops.reset_activity(machine_id)  # its idle time counts from its resume
        await bus.publish(MachineResumeRequested(event_id=new_event_id(), machine_id=machine_id,
                                                 by=by))  # fmt: skip
        log.info("machine.resume_requested", machine_id=machine_id, by=by.value)
    return t
