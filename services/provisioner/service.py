"""The provisioner made of its parts, as its ``__main__`` and the tests make it
(``provisioner(...)``): the machines of this host every part shares (``HostMachines``), the warm
pools' claims, and the handler groups (``CreateArchive``, ``StopStart``, ``PauseResume``), each
made once and handed what it uses. ``Provisioner.resume`` is its start on a host: the daemons of
its machines that should run are started again (after `fleet up` was stopped, or the host
rebooted), and a machine whose setup the stop cut short is set up again
(docs/pipeline.md#deadlines)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiodocker
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.events import MachineProvisioned
from contracts.errors import FleetError
from contracts.ids import new_event_id
from contracts.models import Machine
from contracts.status import COMING_UP, STOPPABLE, MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.machines.unresponsive import mark_unresponsive
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from environments.shared_builds import SharedBuilds
from providers.base import Provider
from providers.egress import DnsProxy, EgressProxy, HostDoor
from providers.warm_pool import WarmPool
from services.provisioner.claims import PoolClaims
from services.provisioner.create_archive import CreateArchive
from services.provisioner.disk import disk_budget
from services.provisioner.egress.enforcer import EgressEnforcer, EgressPolicies
from services.provisioner.egress.events import EgressEvents
from services.provisioner.host import HostHeartbeat, HostMachines
from services.provisioner.pause import PauseResume
from services.provisioner.stop_start import StopStart

log = structlog.get_logger(__name__)

#: The status reason of a machine set up again after the platform stopped during its setup.
SET_UP_AGAIN = "the platform stopped during setup: its daemon was started again"


@dataclass(frozen=True)
class Provisioner:
    machines: HostMachines
    claims: PoolClaims
    create_archive: CreateArchive
    stop_start: StopStart
    pause_resume: PauseResume

    @property
    def handlers(self) -> tuple[object, ...]:
        """Its handler groups, whose consumers ``enter_subscriptions`` starts."""
        return (self.create_archive, self.stop_start, self.pause_resume)

    async def resume(self) -> int:
        """Restart the daemons of this host's live machines whose daemon is gone (after
        `fleet up` was stopped, or the host rebooted). Starting is idempotent, so running ones
        are left be."""
        hm = self.machines
        # Only this host's (and those of no host: recorded before hosts were): another host's
        # machines are its own provisioner's to resume.
        machines = [m for m in await hm.store.list_machines() if m.host_id in (None, hm.host_id)]
        ended = await self.stop_start.keep_stopped(machines)
        if ended:
            log.warning("provision.stopped_machines_ended", count=ended)
        resumed = 0
        for machine in machines:
            resumed += await _resume_one(hm, machine)
        return resumed


def provisioner(
    *, store: Store, bus: Bus, providers: Mapping[str, Provider], box: SecretBox,
    settings: Settings, pools: Mapping[str, WarmPool] | None = None,
    heartbeat: HostHeartbeat | None = None,
    engine: Callable[[], aiodocker.Docker] | None = None, dns: DnsProxy | None = None,
    refusals: EgressEvents | None = None, proxy: EgressProxy | None = None,
    door: HostDoor | None = None, policies: EgressPolicies | None = None,
    clock: Clock = SYSTEM_CLOCK, shared: SharedBuilds | None = None,
    daemons: DaemonClient | None = None,
) -> Provisioner:  # fmt: skip
    """Every part of the provisioner, made once. ``daemons``: what a resumed machine's daemon
    is asked through (None: its answer is not waited for)."""
    egress = EgressEnforcer(store, providers, settings.nats_url, dns, refusals, proxy, door,
                            policies)  # fmt: skip
    machines = HostMachines(store=store, bus=bus, providers=providers, box=box,
                            host_id=settings.host_id, egress=egress,
                            disk=disk_budget(store, settings))  # fmt: skip
    claims = PoolClaims(store, pools or {})
    return Provisioner(
        machines=machines, claims=claims,
        create_archive=CreateArchive(machines, claims, settings, heartbeat=heartbeat,
                                     engine=engine, shared=shared, clock=clock),
        stop_start=StopStart(machines, claims),
        pause_resume=PauseResume(machines, settings, daemons, clock),
    )  # fmt: skip


async def _resume_one(hm: HostMachines, machine: Machine) -> int:
    """1 if the machine's daemon was started anew, else 0."""
    provider = hm.providers.get(machine.provider)
    sealed = await hm.store.machine_secret(machine.id)
    # STOPPABLE: its daemon should run; but not before a stop still to be carried out
    # (a start that overtook it waits for its handler, which ends what runs first).
    if provider is None or sealed is None or machine.status not in STOPPABLE:
        return 0
    async with hm.store.locks.hold(f"provision:{machine.id}", ttl_s=10) as held:
        if not held:
            return 0  # being started by a handler right now
        if await hm.store.stops.outstanding(machine.id):
            log.info("provision.resume_waits_for_stop", machine_id=machine.id)
            return 0
        external_id = await provider.start(machine.id, hm.box.decrypt(sealed))
    try:  # its resolver, and its policy if it restarted
        await hm.egress.enforce(machine)
    except FleetError as exc:
        log.warning("provision.egress_not_resumed", machine_id=machine.id, error=str(exc))
    if external_id == machine.external_id:
        return 0
    if machine.status is S.READY:  # a daemon started anew does not serve yet
        # Unresponsive until its new daemon's first heartbeat
        # (controlplane/machines/unresponsive.py).
        event = await mark_unresponsive(hm.store, machine.id, "its daemon was started again")
        if event is not None:
            await hm.bus.publish(event)
    await hm.store.set_external_id(machine.id, external_id)
    if machine.status in COMING_UP:  # its setup starts over from its ready
        await _set_up_again(hm, machine, external_id)
    log.info("provision.machine_resumed", machine_id=machine.id, external_id=external_id)
    return 1


async def _set_up_again(hm: HostMachines, machine: Machine, external_id: str) -> None:
    """A machine whose setup the platform's stop cut short, its daemon started anew: back
    to booting, and announced as provisioned again, so that the boot watchdog gives the
    new daemon its whole window from now (services/prober/boot_watch.py)."""
    t = await hm.store.transition(
        machine.id, S.BOOTING, f"{SET_UP_AGAIN}; waiting for it to report ready"
    )
    if not t.accepted:
        return  # stopped, failed or archived meanwhile
    await hm.bus.publish(MachineProvisioned(
        event_id=new_event_id(), machine_id=machine.id, provider=machine.provider,
        external_id=external_id,
    ))  # fmt: skip
    log.warning("provision.set_up_again", machine_id=machine.id, was=machine.status.value)
