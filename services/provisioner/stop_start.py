"""The provisioner's part of stopping and starting machines: ``machine.stopped`` ends the machine's
processes (its container) and keeps its home; ``machine.started`` starts the same machine
again. Both hold the machine's ``provision:`` lock, so a stop and a start never overlap,
and both go by the machine's status, so a redelivered event is a no-op:

- a stop is carried out only while the machine is stopped, or when a start overtook it
  (the stop's ``stopDoneAt`` never came): a start must never find the old daemon running;
- a start is carried out only while the machine is booting, once its stop was carried out.
"""

from __future__ import annotations

import structlog

from contracts.bus.consumers import Durable
from contracts.bus.events import (
    MachineProcessesEnded,
    MachineProvisioned,
    MachineStarted,
    MachineStopped,
)
from contracts.errors import NotFound, ProviderError
from contracts.ids import derived_event_id, new_event_id
from contracts.models import Machine
from contracts.status import STOPPED_OR_STOPPING, MachineStatus as S
from controlplane.events.consumer import Permanent, Retry
from controlplane.events.subscriptions import subscriber
from controlplane.settings import Settings
from controlplane.store import disk as store_disk
from providers.base import Provider
from providers.warm_pool import PoolMachine
from services.provisioner.claims import PoolClaims, machine_pool
from services.provisioner.host import HostMachines

log = structlog.get_logger(__name__)


def _start_budget(settings: Settings) -> float:
    """A start waits for its stop to be carried out (a daemon's grace time, a slow engine)."""
    return settings.boot_timeout_s


class StopStart:
    """``machine.stopped`` and ``machine.started`` on this host's machines."""

    def __init__(self, machines: HostMachines, claims: PoolClaims) -> None:
        self.machines = machines
        self.claims = claims
        #: The give-up of the start's declaration, which names none: the host's.
        self.give_up = machines.give_up

    async def stop_event_failed(self, event: MachineStopped, reason: str) -> None:
        # The machine is stopped already (its status says so); a resume ends what is left.
        log.error("stop.failed", machine_id=event.machine_id, reason=reason)

    @subscriber(MachineStopped, durable=Durable.PROVISIONER_STOP, give_up=stop_event_failed)
    async def on_stopped(self, event: MachineStopped) -> None:
        if not await self.machines.owned(event.machine_id):
            return  # its own host's provisioner stops it
        lock = await self.machines.locked(event.machine_id)
        try:
            machine = await self.machines.store.get_machine(event.machine_id)
            overtaken = machine.status is S.BOOTING and not await self.machines.store.stops.done(
                machine.id
            )
            if machine.status not in STOPPED_OR_STOPPING and not overtaken:
                log.info("stop.skipped", machine_id=machine.id, status=machine.status.value)
                return
            await self.end_processes(machine, event.event_id)
        finally:
            await self.machines.store.locks.release(*lock)

    async def end_processes(self, machine: Machine, cause_event_id: str) -> None:
        """End the machine's processes, keep its home; record that it is done, and only then
        call it stopped (a start that overtook the stop finds it booting, and it stays so)."""
        provider = self.machines.providers.get(machine.provider)
        if provider is None:
            raise Permanent(f"no provider named {machine.provider!r} is configured")
        self.machines.egress.forget(machine.id)
        was_up = await provider.stop(machine.id)
        await self._stopped(machine, cause_event_id)
        log.info("stop.machine_stopped", machine_id=machine.id, was_up=was_up)
        # A stopped machine's memory image is gone, and its home counts as it is now.
        await self.machines.store.disk.forget(machine.instance_id, store_disk.paused(machine.id))
        await self.machines.disk.measured(provider, machine.instance_id, machine.id, machine=True)

    async def _stopped(self, machine: Machine, cause_event_id: str) -> None:
        """Its stop is carried out: recorded (a start waits for that), and a stopping machine
        is stopped now, which its event says (what waits for ``stopped`` is woken by it)."""
        await self.machines.store.stops.mark_done(machine.id)
        reason = machine.status_reason or "stopped"
        t = await self.machines.store.transition(machine.id, S.STOPPED, reason)
        if t.moved:
            await self.machines.bus.publish(
                MachineProcessesEnded(
                    event_id=derived_event_id(cause_event_id, "processes-ended"),
                    machine_id=machine.id,
                    reason=reason,
                )
            )

    @subscriber(
        MachineStarted, durable=Durable.PROVISIONER_START, retry_budget=_start_budget,
    )  # fmt: skip
    async def on_started(self, event: MachineStarted) -> None:
        if not await self.machines.owned(event.machine_id):
            return  # its own host's provisioner starts it
        lock = await self.machines.locked(event.machine_id)
        try:
            machine = await self.machines.store.get_machine(event.machine_id)
            if machine.status is not S.BOOTING:  # ready already, or stopped again since
                log.info("start.skipped", machine_id=machine.id, status=machine.status.value)
                return
            if not await self.machines.store.stops.done(machine.id):
                raise Retry("its stop is not carried out yet", delay_s=0.5)
            provider, token = await self.machines.credentials(machine)
            external_id, pooled = await self._start_again(machine, provider, token)
        finally:
            await self.machines.store.locks.release(*lock)
        await self.machines.bus.publish(  # the boot watchdog's cue, as after a create
            MachineProvisioned(
                event_id=derived_event_id(event.event_id, "provisioned"),
                machine_id=machine.id,
                provider=machine.provider,
                external_id=external_id,
            )
        )
        if pooled is not None:  # only now: its ready report must come after provisioned
            await self.claims.hand_over(pooled, provider, machine.id, token)

    async def _start_again(
        self, machine: Machine, provider: Provider, token: str
    ) -> tuple[str, PoolMachine | None]:
        """The same machine, in its own home: a pooled one of its image given that home (not
        yet told who it is), else a cold start."""
        image = machine.environment_image
        pool = await machine_pool(self.machines.store, machine.id, machine.provider, image)
        external_id, pooled = await self.claims.obtain(pool, provider, machine.id, token,
                                                       home_kept=True)  # fmt: skip
        await self.machines.egress.enforce(machine, at_start=True)
        await self.machines.store.set_external_id(machine.id, external_id)
        log.info("start.machine_started", machine_id=machine.id, external_id=external_id,
                 pooled=pooled is not None)  # fmt: skip
        return external_id, pooled

    async def keep_stopped(self, machines: list[Machine]) -> int:
        """At the provisioner's start: a stopped machine with a live process (a provisioner
        that died in the middle of a stop, a host that ran it anyway) has it ended."""
        ended, providers = 0, self.machines.providers
        for machine in machines:
            if machine.status not in STOPPED_OR_STOPPING or machine.provider not in providers:
                continue
            try:
                lock = await self.machines.locked(machine.id)
            except Retry:
                continue  # being stopped (or started) by a handler right now
            try:
                if (
                    now := await self.machines.store.get_machine(machine.id)
                ).status in STOPPED_OR_STOPPING:
                    was_up = await providers[machine.provider].stop(machine.id)
                    await self._stopped(now, new_event_id())
                    ended += was_up
            except NotFound:
                continue
            except (ProviderError, OSError) as exc:  # the next start (or stop) tries again
                log.warning("stop.keep_stopped_failed", machine_id=machine.id, error=str(exc))
            finally:
                await self.machines.store.locks.release(*lock)
        return ended
