"""The provisioner's part of pausing and resuming machines (docs/stop-start.md):
``machine.pause-requested`` checkpoints a gvisor machine and ends its sandbox;
``machine.resume-requested`` restores it, and makes it ready once its daemon answers. Both
hold the machine's ``provision:`` lock (no stop or start overlaps them) and go by its status,
so a redelivered event is a no-op.

A pause refused before the sandbox was touched (a connection of the machine's own that this
runsc cannot keep) makes the machine ready again, its status reason saying why; one that
failed after fails the machine at stage ``pause``: its sandbox may be gone.
"""

from __future__ import annotations

import time

import structlog

from base.clock import Clock
from base.retry import Backoff, retry_until
from contracts.bus.consumers import Durable
from contracts.bus.events import (
    MachinePaused,
    MachinePauseRefused,
    MachinePauseRequested,
    MachineResumed,
    MachineResumeRequested,
)
from contracts.errors import Conflict, DiskLimit, NotSupported, ProviderError
from contracts.ids import derived_event_id
from contracts.status import MachineStatus as S
from controlplane.calls.daemon_client import DaemonClient
from controlplane.events.subscriptions import subscriber
from controlplane.machines.status_transitions import PAUSE_REFUSED
from controlplane.machines.unresponsive import mark_unresponsive
from controlplane.settings import Settings
from controlplane.store import disk as store_disk
from providers.base import DaemonWatch, Pauser, capability
from services.provisioner.host import HostMachines

log = structlog.get_logger(__name__)

#: The machine's lock, held through a checkpoint (seconds for each 256 MiB on ptrace) or a
#: restore: no archive may end its sandbox under it.
_HELD_S = 600.0
#: A resumed daemon asked again until it answers: at once, then every 0.5 s at most.
_ASK_AGAIN = Backoff(base=0.02, cap=0.5)


class PauseResume:
    """``machine.pause-requested`` and ``machine.resume-requested`` on this host's machines;
    ``daemons``: what a resume waits on, its daemon's answer (None: not waited for)."""

    def __init__(self, machines: HostMachines, settings: Settings,
                 daemons: DaemonClient | None, clock: Clock) -> None:  # fmt: skip
        self.machines = machines
        self.settings = settings
        self.daemons = daemons
        self.clock = clock

    def _pauser(self, provider_name: str, machine_id: str) -> Pauser:
        pauser = capability(self.machines.providers.get(provider_name), Pauser)
        if pauser is None:
            raise NotSupported(f"provider {provider_name!r} cannot pause machine {machine_id}")
        return pauser

    async def pause_event_failed(self, event: MachinePauseRequested, reason: str) -> None:
        # Never left pausing for good: what is left of it is unknown.
        await self.machines.fail(event.machine_id, "pause", reason, event.event_id)

    async def resume_event_failed(self, event: MachineResumeRequested, reason: str) -> None:
        await self.machines.fail(event.machine_id, "resume", reason, event.event_id)

    @subscriber(MachinePauseRequested, durable=Durable.PROVISIONER_PAUSE,
                give_up=pause_event_failed)  # fmt: skip
    async def on_pause_requested(self, event: MachinePauseRequested) -> None:
        if not await self.machines.owned(event.machine_id):
            return  # its own host's provisioner pauses it
        lock = await self.machines.locked(event.machine_id, ttl_s=_HELD_S)
        try:
            machine = await self.machines.store.get_machine(event.machine_id)
            if machine.status is not S.PAUSING:  # paused already, or stopped since
                log.info("pause.skipped", machine_id=machine.id, status=machine.status.value)
                return
            began = time.monotonic()
            field = store_disk.paused(machine.id)
            try:
                # Its image takes at most its memory: that place is held before the checkpoint.
                async with self.machines.disk.held(machine.instance_id, field,
                                          await self.machines.disk.memory_bytes(machine),
                                          f"machine {machine.id}'s pause"):  # fmt: skip
                    size = await self._pauser(machine.provider, machine.id).pause(machine.id)
            except (Conflict, NotSupported, DiskLimit) as exc:  # refused; the sandbox runs on
                await self._refused(machine.id, exc.message, event.event_id)
                return
            except (ProviderError, OSError) as exc:
                await self.machines.fail(machine.id, "pause", str(exc), event.event_id)
                return
            await self.machines.store.disk.settle(machine.instance_id, field, size)
            took_ms = (time.monotonic() - began) * 1000
            await self.machines.store.heartbeats.forget(
                machine.id
            )  # none are expected while paused
            t = await self.machines.store.transition(machine.id, S.PAUSED, event.reason,
                                            paused_bytes=size)  # fmt: skip
        finally:
            await self.machines.store.locks.release(*lock)
        if t.moved:
            await self.machines.bus.publish(MachinePaused(
                event_id=derived_event_id(event.event_id, "paused"), machine_id=machine.id,
                bytes=size, duration_ms=round(took_ms, 1), by=event.by,
            ))  # fmt: skip
        log.info("pause.machine_paused", machine_id=machine.id, bytes=size, ms=round(took_ms))

    async def _refused(self, machine_id: str, why: str, cause_event_id: str) -> None:
        reason = f"{PAUSE_REFUSED}{why}"
        t = await self.machines.store.transition(machine_id, S.READY, reason)
        if t.moved:  # what waits on the machine's events sees it ready again
            await self.machines.bus.publish(MachinePauseRefused(
                event_id=derived_event_id(cause_event_id, "pause-refused"),
                machine_id=machine_id, reason=reason,
            ))  # fmt: skip
        log.warning("pause.refused", machine_id=machine_id, reason=why)

    @subscriber(MachineResumeRequested, durable=Durable.PROVISIONER_RESUME,
                give_up=resume_event_failed)  # fmt: skip
    async def on_resume_requested(self, event: MachineResumeRequested) -> None:
        if not await self.machines.owned(event.machine_id):
            return
        began = self.clock.monotonic()
        restored = await self._restored(event)
        if restored is None:
            return
        # Ready only once its daemon answers, as a started one is: it reconnects at once, and
        # a call sent the moment it reads ready must find it.
        if not await self._answers(event.machine_id):
            await self._silent_after_resume(event.machine_id)
            return
        took_ms = (self.clock.monotonic() - began) * 1000
        t = await self.machines.store.transition(event.machine_id, S.READY, f"resumed ({event.by})")
        if t.moved:
            await self.machines.bus.publish(MachineResumed(
                event_id=derived_event_id(event.event_id, "resumed"),
                machine_id=event.machine_id, duration_ms=round(took_ms, 1), by=event.by,
            ))  # fmt: skip
        log.info("resume.machine_resumed", machine_id=event.machine_id, ms=round(took_ms),
                 restore_ms=round((restored - began) * 1000),
                 after_ms=round(took_ms - (restored - began) * 1000))  # fmt: skip

    async def _restored(self, event: MachineResumeRequested) -> float | None:
        """The machine's sandbox restored from its pause, under its lock: when (the clock's
        reading as the restore ended); None if there was nothing to restore (resumed already,
        stopped since) or the restore failed it."""
        lock = await self.machines.locked(event.machine_id, ttl_s=_HELD_S)
        try:
            machine = await self.machines.store.get_machine(event.machine_id)
            if machine.status is not S.RESUMING:
                log.info("resume.skipped", machine_id=machine.id, status=machine.status.value)
                return None
            pauser = self._pauser(machine.provider, machine.id)
            watch = capability(self.machines.providers.get(machine.provider), DaemonWatch)
            try:
                # Restored already: a redelivery after a stop while its daemon was waited for.
                if not (watch is not None and await watch.daemon_runs(machine.id)):
                    # A restored sandbox is a new process: the machine's id for it stored, or
                    # the provisioner's next start would take its daemon for started anew.
                    await self.machines.store.set_external_id(
                        machine.id, await pauser.resume(machine.id)
                    )
                restored = self.clock.monotonic()
                # The restore's namespace is a new one: the instance's policy goes on it again.
                await self.machines.egress.enforce(machine, at_start=True)
            except (ProviderError, NotSupported, OSError) as exc:
                await self.machines.fail(machine.id, "resume", str(exc), event.event_id)
                return None
            await self.machines.store.disk.forget(
                machine.instance_id, store_disk.paused(machine.id)
            )
            await self.machines.store.heartbeats.forget(
                machine.id
            )  # its first beat after is the new one
            return restored
        finally:
            await self.machines.store.locks.release(*lock)

    async def _answers(self, machine_id: str) -> bool:
        """Once the resumed machine's daemon answers; False if it did not within
        ``FLEET_BOOT_TIMEOUT_S``."""
        daemons = self.daemons
        if daemons is None:
            return True
        return await retry_until(lambda: daemons.answers(machine_id), backoff=_ASK_AGAIN,
                                 budget_s=self.settings.boot_timeout_s,
                                 clock=self.clock)  # fmt: skip

    async def _silent_after_resume(self, machine_id: str) -> None:
        """Restored, but its daemon does not answer: unresponsive, and ready at its daemon's
        first heartbeat (services/prober/liveness.py), never before it serves."""
        reason = (f"resumed, but its daemon did not answer within "
                  f"{self.settings.boot_timeout_s:g}s")  # fmt: skip
        if (marked := await mark_unresponsive(self.machines.store, machine_id, reason)) is not None:
            await self.machines.bus.publish(marked)
        log.warning("resume.daemon_silent", machine_id=machine_id)
