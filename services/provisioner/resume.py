"""The provisioner at its start (``Provisioner.resume``): the daemons of its host's machines
that should run are started again (after `fleet up` was stopped, or the host rebooted), and a
machine whose setup the stop cut short is set up again (docs/pipeline.md#deadlines)."""

from __future__ import annotations

import structlog

from contracts.errors import FleetError
from contracts.events import MachineProvisioned
from contracts.ids import new_event_id
from contracts.models import Machine
from contracts.status import COMING_UP, STOPPABLE, MachineStatus as S
from controlplane.machines.unresponsive import mark_unresponsive
from services.provisioner.pause import PauseHandlers

log = structlog.get_logger(__name__)

#: The status reason of a machine set up again after the platform stopped during its setup.
SET_UP_AGAIN = "the platform stopped during setup: its daemon was started again"


class Resumer(PauseHandlers):
    async def resume(self) -> int:
        """Restart the daemons of this host's live machines whose daemon is gone (after
        `fleet up` was stopped, or the host rebooted). Starting is idempotent, so running ones
        are left be."""
        resumed = 0
        # Only this host's (and those of no host: recorded before hosts were): another host's
        # machines are its own provisioner's to resume.
        machines = [
            m for m in await self.store.list_machines() if m.host_id in (None, self.host_id)
        ]
        ended = await self.keep_stopped(machines)
        if ended:
            log.warning("provision.stopped_machines_ended", count=ended)
        for machine in machines:
            provider = self.providers.get(machine.provider)
            sealed = await self.store.machine_secret(machine.id)
            # STOPPABLE: its daemon should run; but not before a stop still to be carried out
            # (a start that overtook it waits for its handler, which ends what runs first).
            if provider is None or sealed is None or machine.status not in STOPPABLE:
                continue
            async with self.store.locks.hold(f"provision:{machine.id}", ttl_s=10) as held:
                if not held:
                    continue  # being started by a handler right now
                if await self.store.stops.outstanding(machine.id):
                    log.info("provision.resume_waits_for_stop", machine_id=machine.id)
                    continue
                external_id = await provider.start(machine.id, self.box.decrypt(sealed))
            try:  # its resolver, and its policy if it restarted
                await self.egress.enforce(machine)
            except FleetError as exc:
                log.warning("provision.egress_not_resumed", machine_id=machine.id, error=str(exc))
            if external_id != machine.external_id:
                if machine.status is S.READY:  # a daemon started anew does not serve yet
                    await self._not_serving_yet(machine.id)
                await self.store.set_external_id(machine.id, external_id)
                if machine.status in COMING_UP:  # its setup starts over from its ready
                    await self._set_up_again(machine, external_id)
                log.info(
                    "provision.machine_resumed", machine_id=machine.id, external_id=external_id
                )
                resumed += 1
        return resumed

    async def _set_up_again(self, machine: Machine, external_id: str) -> None:
        """A machine whose setup the platform's stop cut short, its daemon started anew: back
        to booting, and announced as provisioned again, so that the boot watchdog gives the
        new daemon its whole window from now (services/prober/boot_watch.py)."""
        t = await self.store.transition(
            machine.id, S.BOOTING, f"{SET_UP_AGAIN}; waiting for it to report ready"
        )
        if not t.accepted:
            return  # stopped, failed or archived meanwhile
        await self.bus.publish(MachineProvisioned(
            event_id=new_event_id(), machine_id=machine.id, provider=machine.provider,
            external_id=external_id,
        ))  # fmt: skip
        log.warning("provision.set_up_again", machine_id=machine.id, was=machine.status.value)

    async def _not_serving_yet(self, machine_id: str) -> None:
        """Unresponsive until its new daemon's first heartbeat
        (controlplane/machines/unresponsive.py)."""
        event = await mark_unresponsive(self.store, machine_id, "its daemon was started again")
        if event is not None:
            await self.bus.publish(event)
