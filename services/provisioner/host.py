"""This provisioner's host: its heartbeat in the store, the room it has left for machines
(docs/hosts.md), and its machines as every part of the provisioner shares them
(``HostMachines``). Every provisioner replica on one host heartbeats for it under the same id."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.bus.events import Event
from contracts.models import Machine
from controlplane.bus import Bus
from controlplane.events.consumer import Permanent, Retry
from controlplane.machines.failures import fail_machine
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from providers.base import Provider
from providers.host_memory import mem_available_mb
from services.provisioner.disk import DiskBudget
from services.provisioner.egress.enforcer import EgressEnforcer

log = structlog.get_logger(__name__)


class HostHeartbeat(Ticker):
    """Announces the host at entry, then every ``FLEET_HOST_HEARTBEAT_S`` of ``clock``'s time
    until exit; each beat is dated by ``clock``."""

    name = "host-heartbeat"
    failed_event = "host.heartbeat_failed"

    def __init__(
        self, store: Store, settings: Settings, clock: Clock = SYSTEM_CLOCK,
        memory: Callable[[], float | None] = mem_available_mb, proxy_url: str = "",
    ) -> None:  # fmt: skip
        """``proxy_url``: where this host's gvisor machines reach the egress proxy, recorded
        with each beat for the stages that write a machine's configuration."""
        super().__init__(settings.host_heartbeat_s, clock)
        self._proxy_url = proxy_url
        self._store = store
        #: The host's available memory, MiB (providers/host_memory.py): what its floor reads.
        self.memory = memory
        self._host_id = settings.host_id
        self._capacity = settings.host_capacity
        self._min_available_mb = settings.host_min_available_mb
        #: hosts.drain's flag as of the last heartbeat (logged when it changes; the capacity
        #: gate reads the store's at each fetch).
        self.draining = False

    async def __aenter__(self) -> Self:
        await self.beat()
        log.info("host.announced", host_id=self._host_id, capacity=self._capacity)
        return await super().__aenter__()

    async def tick(self) -> None:
        await self.beat()

    async def beat(self) -> None:
        """One heartbeat now (its flag: whether the host is drained)."""
        low = memory_low(self._min_available_mb, self.memory)
        draining = await self._store.hosts.beat(
            self._host_id, self._capacity, self.clock.now(), memory_low=low,
            proxy_url=self._proxy_url,
        )  # fmt: skip
        if draining != self.draining:
            log.info("host.draining" if draining else "host.takes_machines", host_id=self._host_id)
        self.draining = draining


def memory_low(
    min_available_mb: int, available_mb: Callable[[], float | None] = mem_available_mb
) -> bool:
    """Below the host's memory floor (``FLEET_HOST_MIN_AVAILABLE_MB``; 0: never)."""
    if min_available_mb <= 0:
        return False
    available = available_mb()
    return available is not None and available < min_available_mb


async def room_left(
    store: Store,
    settings: Settings,
    held: frozenset[str],
    *,
    draining: bool = False,
    available_mb: Callable[[], float | None] = mem_available_mb,
) -> int | None:
    """How many more machines this host may take, counting those whose ``machine.created``
    it holds (fetched, not done): None when its capacity is unlimited; 0 when drained or
    below its memory floor."""
    if draining or memory_low(settings.host_min_available_mb, available_mb):
        return 0
    if settings.host_capacity <= 0:
        return None
    occupancy = await store.hosts.occupancy(settings.host_id)
    return settings.host_capacity - len(occupancy.running | held)


@dataclass(frozen=True)
class HostMachines:
    """What every part of the provisioner shares: the records, the bus, this host's providers
    and id, the machines' credentials, their egress and their instance's disk budget."""

    store: Store
    bus: Bus
    providers: Mapping[str, Provider]
    box: SecretBox
    #: This provisioner's host (FLEET_HOST_ID).
    host_id: str
    egress: EgressEnforcer
    disk: DiskBudget

    def owns(self, machine: Machine) -> bool:
        """The machine is this host's to stop, start or archive: started here, or by no host
        (before hosts were recorded, or never started: every host may look, none finds it)."""
        return machine.host_id is None or machine.host_id == self.host_id

    async def owned(self, machine_id: str) -> bool:
        return self.owns(await self.store.get_machine(machine_id))

    async def locked(self, machine_id: str, ttl_s: float = 30) -> tuple[str, str]:
        """The machine's ``provision:`` lock, taken (Retry: another handler holds it)."""
        lock = (f"provision:{machine_id}", self.store.locks.token())
        if not await self.store.locks.take(*lock, ttl_s=ttl_s):
            raise Retry("another provisioner is starting or stopping this machine", delay_s=0.5)
        return lock

    async def credentials(self, machine: Machine) -> tuple[Provider, str]:
        """The machine's provider and its daemon's token (Permanent: it has neither)."""
        provider = self.providers.get(machine.provider)
        sealed = await self.store.machine_secret(machine.id)
        if provider is None or sealed is None:
            raise Permanent(f"machine {machine.id} cannot be started: no provider "
                            f"{machine.provider!r} or no credentials")  # fmt: skip
        return provider, self.box.decrypt(sealed)

    async def give_up(self, event: Event, reason: str) -> None:
        """A handler's last word on an event it could not carry out: the machine failed at
        stage ``provision``."""
        await self.fail(event.machine_id, "provision", reason, event.event_id)

    async def fail(self, machine_id: str, stage: str, reason: str, cause_event_id: str) -> None:
        """The machine failed at ``stage`` (its ``machine.failed`` says why)."""
        await fail_machine(self.store, self.bus, machine_id, stage=stage, reason=reason,
                           cause_event_id=cause_event_id)  # fmt: skip
