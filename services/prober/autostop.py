"""Auto-stop: the prober, which owns liveness, pauses or stops machines that have been idle
too long, and stops machines paused too long.

Idle means no gateway activity (``services.gateway.auth.activity``: exec, terminal input, file or
port traffic, codemode calls) for the instance's ``idleAfterS`` (``instances.setAutoStop``).
Background processes and cron jobs are not activity: the daemon never reports them. A machine
with no recorded activity yet starts its clock at the first look. Replicas may look at once:
the stop or pause is a compare-and-set, so only one of them moves a machine and says so.

An idle gvisor machine is paused unless the instance's action is ``stop``, through the path
``machines.pause`` takes; a namespaces machine is always stopped. A pause the provisioner
refused leaves the machine ready, its reason saying so: the next round stops it instead (a
retry each round would refuse again while the connection is open). A machine paused for
``FLEET_PAUSED_STOP_AFTER_S`` (counted from the first round that saw it paused) is stopped,
which deletes its memory image.

An instance that never set auto-stop gets the platform's default, ``FLEET_AUTOPAUSE_IDLE_S``
(900 s; 0: off): each of its ``ready`` machines that keeps its memory (a gvisor machine on
``local``) is paused when idle that long. The default only ever pauses: a refused pause is
neither followed by a stop nor tried again until the machine's status moves, and a namespaces
machine is left running. ``instances.setAutoStop {idleAfterS: 0}`` turns auto-stop off for an
instance, the default included.
"""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.bus.events import PauseBy
from contracts.gateway.stop import AutoStopAction
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.machines.idleness import IDLE_CANDIDATES, idle_machines, last_activity
from controlplane.machines.status_transitions import PAUSE_REFUSED, pause_machine, stop_machine
from controlplane.policy import keeps_memory
from controlplane.settings import Settings
from controlplane.store import AutoStopRule, Store

log = structlog.get_logger(__name__)


def idle_reason(idle_after_s: int) -> str:
    return f"idle for {idle_after_s} s"


def idle_action(machine: Machine, action: AutoStopAction | None) -> AutoStopAction:
    """What auto-stop does to this idle machine: only a local gvisor one keeps its memory."""
    if not keeps_memory(machine.runtime, machine.provider):
        return "stop"
    return action or "pause"


class IdleStopper(Ticker):
    name = "autostop"
    failed_event = "autostop.tick_failed"

    def __init__(
        self, *, store: Store, bus: Bus, settings: Settings, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(settings.autostop_tick_s, clock)
        self.store = store
        self.bus = bus
        self.settings = settings

    async def tick(self) -> int:
        return await self.sweep()

    async def sweep(self) -> int:
        """Pause or stop every idle machine of the instances with auto-stop on, pause those of
        the platform's default, then stop the machines paused too long; how many moved."""
        rules = await self.store.stops.autostops()
        machines = await self.store.list_machines()
        up: dict[str, list[Machine]] = {}
        for m in machines:
            if m.status in IDLE_CANDIDATES:
                up.setdefault(m.instance_id, []).append(m)
        moved = 0
        for instance_id, rule in rules.items():
            if rule.idle_after_s > 0:
                for m in await self._idle_now(up.get(instance_id, []), rule.idle_after_s):
                    moved += await self._idle(m, rule)
        moved += await self._default_pause(machines, set(rules))
        return moved + await self._paused_too_long(machines)

    async def _idle_now(self, machines: list[Machine], idle_after_s: int) -> list[Machine]:
        """Those of ``machines`` idle for ``idle_after_s``; the clock of one with no activity
        yet starts now."""
        now = self.clock.now()
        last = await last_activity(self.store, machines, now)
        return idle_machines(machines, last, idle_after_s, now)

    async def _default_pause(self, machines: list[Machine], ruled: set[str]) -> int:
        """``FLEET_AUTOPAUSE_IDLE_S``: the idle ready machines that keep their memory, of the
        instances with no rule of their own, are paused (see the module)."""
        after = self.settings.autopause_idle_s
        if after <= 0:
            return 0
        candidates = [m for m in machines
                      if m.instance_id not in ruled and m.status is S.READY
                      and keeps_memory(m.runtime, m.provider)
                      and not m.status_reason.startswith(PAUSE_REFUSED)]  # fmt: skip
        moved = 0
        for m in await self._idle_now(candidates, after):
            t = await pause_machine(self.store, self.bus, m.id, idle_reason(after), PauseBy.IDLE)
            if t.moved:
                log.info("autostop.default_paused", machine_id=m.id, idle_after_s=after)
                moved += 1
        return moved

    async def _idle(self, m: Machine, rule: AutoStopRule) -> int:
        reason = idle_reason(rule.idle_after_s)
        refused = m.status_reason.startswith(PAUSE_REFUSED)
        if idle_action(m, rule.action) == "pause" and not refused:
            t = await pause_machine(self.store, self.bus, m.id, reason, PauseBy.IDLE)
            if t.moved:
                log.info("autostop.paused", machine_id=m.id, idle_after_s=rule.idle_after_s)
                return 1
            if t.accepted:
                return 0  # pausing already
            # Not ready (unresponsive): it cannot be checkpointed, so it is stopped.
        elif refused:
            reason = f"{reason}; {m.status_reason}"
        t = await stop_machine(self.store, self.bus, m.id, reason)
        if t.moved:
            log.info("autostop.stopped", machine_id=m.id, idle_after_s=rule.idle_after_s)
        return int(t.moved)

    async def _paused_too_long(self, machines: list[Machine]) -> int:
        after = self.settings.paused_stop_after_s
        if after <= 0:
            return 0
        paused = [m.id for m in machines if m.status is S.PAUSED]
        now = self.clock.now()
        moved = 0
        for machine_id, since in (await self.store.stops.paused_since(paused, now)).items():
            if now - since >= after:
                t = await stop_machine(self.store, self.bus, machine_id, f"paused for {after} s")
                if t.moved:
                    moved += 1
                    log.info("autostop.paused_stopped", machine_id=machine_id, after_s=after)
        return moved
