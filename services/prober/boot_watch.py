"""The boot watchdog (docs/pipeline.md#deadlines): a machine whose daemon never reports ready
fails at stage ``boot``; it does not hang. Its deadline judges the machine, never the platform:

- it runs only while the platform watches the machine. The watchdog looks at a booting machine
  every ``look_s`` (from any prober replica: the window is in Redis, ``store.boot_watch``); a
  look that finds the last one more than ``gap_s`` old (the platform was stopped, or every
  prober was) begins a new window, as does a daemon started anew (another external id: the
  provisioner that comes back starts the daemons of the machines it finds booting);
- a fork's window begins at its ``machine.provisioned``, which follows its restore;
- at the end of a window the machine's host is asked whether its daemon runs
  (``host.daemonRuns``): one that runs, on a loaded host, is only slow, and gets another
  window; so does one whose host cannot be asked. Past ``FLEET_BOOT_ALIVE_MAX_S`` of such
  windows, or once its host says its daemon is not running, the machine fails, its reason
  saying which window ran out.

The watch goes on while the machine is setting up, its window held (setting up is not
booting): a daemon that goes away during its setup sends the machine back to booting
(services/setup_pusher), and its window goes on from there. It ends once the machine's setup
is pushed (probing, or any status past it)."""

from __future__ import annotations

import math
from typing import Protocol

import structlog

from base.clock import Clock
from contracts.bus.consumers import Durable
from contracts.bus.events import Event, MachineProvisioned
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.events.consumer import Permanent, Retry
from controlplane.events.subscriptions import subscriber
from controlplane.machines.failures import fail_machine
from controlplane.settings import Settings
from controlplane.store import BootWindow, Store

log = structlog.get_logger(__name__)

#: The longest wait between two looks at a booting machine.
LOOK_S = 5.0
#: Looks missed in a row before the watchdog counts itself as having been away.
MISSED_LOOKS = 3

#: What each window's beginning is, in a failure's reason.
_SINCE = {
    "provisioned": "of being provisioned",
    "daemon": "of its daemon's start again",
    "platform": "of the platform's return (it was stopped while the machine booted)",
    "alive": "of its host's last word that its daemon runs",
}


def boot_looks(timeout_s: float) -> tuple[float, float]:
    """How often a booting machine is looked at, and the gap between two looks past which the
    watchdog was away (the time since is not the machine's)."""
    look = min(LOOK_S, timeout_s / 4)
    return look, look * MISSED_LOOKS


class DaemonLiveness(Protocol):
    async def daemon_runs(self, machine: Machine) -> bool | None:
        """Whether the machine's daemon runs on its host; None: its host cannot tell."""


class BootWatchdog:
    """``machine.provisioned`` watched until its daemon reports ready. Its windows are
    ``clock``'s time (a test's manual one); ``hosts`` is asked at the end of a window (None: no
    host is asked; the machine fails then)."""

    def __init__(self, store: Store, bus: Bus, settings: Settings, clock: Clock,
                 hosts: DaemonLiveness | None = None) -> None:  # fmt: skip
        self.store = store
        self.bus = bus
        self.settings = settings
        self.clock = clock
        self.hosts = hosts

    async def give_up_boot(self, event: Event, reason: str) -> None:
        await fail_machine(self.store, self.bus, event.machine_id, stage="boot", reason=reason,
                           cause_event_id=event.event_id)  # fmt: skip

    @subscriber(MachineProvisioned, durable=Durable.PROBER_BOOT, give_up=give_up_boot)
    async def on_provisioned(self, event: MachineProvisioned) -> None:
        machine = await self.store.get_machine(event.machine_id)
        if event.external_id and machine.external_id != event.external_id:
            # An earlier boot's watch: the machine was started again since (its daemon is
            # another), and that start's own provisioned event watches it. Judged by this one,
            # a start just asked was failed by an old boot's deadline.
            log.info("boot.watch_superseded", machine_id=machine.id, was=event.external_id)
            return
        look_s, gap_s = boot_looks(self.settings.boot_timeout_s)
        if machine.status not in (S.BOOTING, S.SETTING_UP):  # set up, stopped, failed, ...
            await self.store.boot_watch.forget(machine.id)
            return
        now = self.clock.now()
        setting_up = machine.status is S.SETTING_UP
        window = await self.store.boot_watch.look(
            machine.id, now=now, start=event.occurred_at.timestamp(),
            daemon=machine.external_id or "", gap_s=gap_s,
            ttl_s=self.settings.boot_timeout_s + self.settings.boot_alive_max_s + gap_s,
            holds=setting_up,
        )  # fmt: skip
        if setting_up or window is None:  # it reported: its window holds while it sets up
            raise Retry("its daemon reported ready: watched until its setup is pushed",
                        delay_s=look_s, budget_s=math.inf)  # fmt: skip
        left = window.since + self.settings.boot_timeout_s - now
        if left > 0:
            # Looked at again later, without holding a handler slot while the machine boots.
            raise Retry("waiting for the daemon's ready report", delay_s=min(look_s, left),
                        budget_s=math.inf)  # fmt: skip
        await self._window_ran_out(machine, window, now, look_s)

    async def _window_ran_out(
        self, machine: Machine, window: BootWindow, now: float, look_s: float
    ) -> None:
        timeout = self.settings.boot_timeout_s
        reason = (f"the daemon did not report ready within {timeout:g}s {_SINCE[window.why]} "
                  f"({machine.external_id}); see the machine's daemon log")  # fmt: skip
        if self.hosts is None:
            raise Permanent(reason)
        runs = await self.hosts.daemon_runs(machine)
        if (await self.store.get_machine(machine.id)).status is not S.BOOTING:
            raise Retry("it reported while its host was asked", delay_s=0.0, budget_s=math.inf)
        if runs is False:
            raise Permanent(f"{reason}; its daemon is not running on its host")
        first = await self.store.boot_watch.alive(machine.id, now)
        cap = self.settings.boot_alive_max_s
        if first is None or now - first >= cap:
            raise Permanent(f"{reason}; its host said it runs, or could not tell, for "
                            f"{cap:g}s more")  # fmt: skip
        log.info("boot.daemon_runs", machine_id=machine.id, host_says=runs,
                 waited_s=round(now - first))  # fmt: skip
        raise Retry("its daemon runs on its host: another window", delay_s=look_s,
                    budget_s=math.inf)  # fmt: skip
