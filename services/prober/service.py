"""The prober made of its parts (``prober(...)``): the readiness probe (setup was pushed ->
wait the configured delay, probe until healthy or deadline), the boot watchdog and the placement
watchdog, each a handler group made once."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.consumers import Durable
from contracts.bus.events import MachineReady, SetupPushed
from contracts.daemon import rpc as d
from contracts.errors import NotFound
from contracts.ids import derived_event_id
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.events.consumer import Permanent
from controlplane.events.subscriptions import subscriber
from controlplane.process.stage import Stage
from controlplane.settings import Settings
from controlplane.store import Store
from services.prober.boot_watch import BootWatchdog, DaemonLiveness
from services.prober.checks import probe_once
from services.prober.placement import PlacementWatchdog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Prober:
    probe: ReadinessProbe
    boot: BootWatchdog
    placement: PlacementWatchdog

    @property
    def handlers(self) -> tuple[object, ...]:
        """Its handler groups, whose consumers ``enter_subscriptions`` starts."""
        return (self.probe, self.boot, self.placement)


def prober(*, store: Store, bus: Bus, daemons: DaemonClient, settings: Settings,
           keys: MachineKeys | None = None, clock: Clock = SYSTEM_CLOCK,
           hosts: DaemonLiveness | None = None) -> Prober:  # fmt: skip
    """Every part of the prober, made once. The probe's delay, deadline and interval, and the
    watchdogs' waits, are ``clock``'s time (a test's manual one); ``hosts`` tells the boot
    watchdog whether a machine's daemon runs (services/prober/boot_watch.py)."""
    return Prober(
        probe=ReadinessProbe(store=store, bus=bus, daemons=daemons, settings=settings, keys=keys,
                             clock=clock),
        boot=BootWatchdog(store, bus, settings, clock, hosts),
        placement=PlacementWatchdog(store, bus, settings, clock),
    )  # fmt: skip


class ReadinessProbe(Stage):
    """``machine.setup-pushed``: probed until healthy, then ``machine.ready``."""

    stage = "probe"
    daemon_methods = (d.HEALTH, d.EXEC_COMMAND)

    @subscriber(SetupPushed, durable=Durable.PROBER)
    async def on_setup_pushed(self, event: SetupPushed) -> None:
        # One round trip: read the machine and move it to probing if it is setting up (or
        # probing: a redelivery); its sealed token comes with it, for the daemon client's key.
        step = await self.store.stages.advance(
            event.machine_id, S.PROBING, "waiting for the readiness probe"
        )
        machine = step.machine
        if machine is None:
            raise NotFound(f"machine {event.machine_id} not found")
        if step.transition.previous is S.READY:  # redelivered after a crash: announce again
            await self._announce(event)  # (deduplicated)
            return
        if not step.transition.accepted:
            log.info("probe.skipped", status=machine.status.value)
            return
        if self.keys is not None:
            self.keys.prime(machine.id, step.sealed_token)
        if self.settings.probe_delay_s > 0:
            await self.clock.sleep(self.settings.probe_delay_s)
        if not await self.probe_until_healthy(event):
            return
        t = await self.store.transition(machine.id, S.READY, "all readiness checks passed")
        if t.accepted:  # moved now, or a repeat: announcing again is deduplicated
            await self._announce(event)

    async def probe_until_healthy(self, event: SetupPushed) -> bool:
        """True once healthy; False if the machine left ``probing`` meanwhile (its daemon
        started anew sends it back to booting: its setup starts over)."""
        s = self.settings
        mc = self.daemons.machine(event.machine_id)
        deadline = self.clock.monotonic() + s.probe_timeout_s
        while True:
            problem = await probe_once(mc, event)
            if problem is None:
                log.debug("probe.healthy")  # machine.ready follows: no line per machine
                return True
            if (status := (await self.store.get_machine(event.machine_id)).status) is not (
                S.PROBING
            ):
                log.info("probe.left", status=status.value, problem=problem)
                return False
            if self.clock.monotonic() >= deadline:
                raise Permanent(f"not healthy after {s.probe_timeout_s:g}s: {problem}")
            log.info("probe.not_yet", problem=problem)
            await self.clock.sleep(s.probe_interval_s)

    async def _announce(self, cause: SetupPushed) -> None:
        await self.bus.publish(
            MachineReady(
                event_id=derived_event_id(cause.event_id, "ready"), machine_id=cause.machine_id
            )
        )
