"""Liveness after ready: daemons publish heartbeats; the prober notices when they stop.

Heartbeats arrive on a queue-group subscription (replicas share them) and are written to Redis
in batches (``store.heartbeats``: machine -> last beat). A sweep marks a ``ready`` machine
``unresponsive`` once it missed ``missed_heartbeats`` beats, and the first beat after that
makes it ``ready`` again. Both are compare-and-set transitions and
both publish an event, so the console and `fleet events` see them.

Whoever ends or starts again a machine's daemon marks it at once (controlplane/
unresponsive.py): a daemon beats only once it serves, so its first beat is the recovery.
"""

from __future__ import annotations

from types import TracebackType

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.bus import subjects
from contracts.bus.events import MachineReady, MachineUnresponsive
from contracts.errors import NotFound
from contracts.ids import MACHINE_ID_RE, new_event_id
from contracts.status import PAUSE_STATES, STOPPED_OR_STOPPING, TERMINAL, MachineStatus as S
from controlplane.bus import Bus
from controlplane.hosts import lost_hosts
from controlplane.machines.unresponsive import mark_unresponsive
from controlplane.settings import Settings
from controlplane.store import Store

log = structlog.get_logger(__name__)

_SWEEP_BATCH = 1000


class HeartbeatMonitor:
    """Beats are dated, the window and the rounds timed, by ``clock`` (a test's manual one)."""

    def __init__(
        self, *, store: Store, bus: Bus, settings: Settings, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.clock = clock
        self.store = store
        self.bus = bus
        self.settings = settings
        self.window_s = settings.heartbeat_s * settings.missed_heartbeats
        self.tick_s = max(0.05, min(1.0, settings.heartbeat_s / 2))
        self._beats: dict[str, float] = {}
        self._sub: Subscription | None = None
        self._ticker = Ticker(self.tick_s, clock, tick=self._tick, name="heartbeats",
                              failed_event="liveness.tick_failed")  # fmt: skip
        self._started = 0.0

    async def __aenter__(self) -> HeartbeatMonitor:
        self._started = self.clock.monotonic()
        self._sub = await self.bus.nc.subscribe(
            subjects.ALL_HEARTBEATS, queue="prober", cb=self._on_beat
        )
        await self._ticker.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._ticker.__aexit__(None, None, None)
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()
        await self.flush()  # what arrived last still counts

    async def _on_beat(self, msg: Msg) -> None:
        machine_id = msg.subject.rsplit(".", 1)[-1]
        if MACHINE_ID_RE.fullmatch(machine_id):  # the payload is not needed: arrival is the fact
            self._beats[machine_id] = self.clock.now()

    async def _tick(self) -> None:
        await self.flush()
        # Right after a (re)start nobody has had a chance to beat yet: wait one window.
        if self.clock.monotonic() - self._started >= self.window_s:
            await self.sweep()

    async def flush(self) -> None:
        """Record the beats since the last flush; machines that were unresponsive recover."""
        beats, self._beats = self._beats, {}
        if not beats:
            return
        for machine_id in await self.store.heartbeats.record(beats):
            await self._recover(machine_id)

    async def _recover(self, machine_id: str) -> None:
        t = await self.store.transition(machine_id, S.READY, "heartbeats resumed")
        await self.store.heartbeats.clear_unresponsive(machine_id)
        if t.moved:
            await self.bus.publish(MachineReady(event_id=new_event_id(), machine_id=machine_id))

    async def sweep(self) -> None:
        """Mark ready machines whose last beat is older than the window unresponsive."""
        now = self.clock.now()
        stale = await self.store.heartbeats.stale(now - self.window_s, _SWEEP_BATCH)
        marked: list[MachineUnresponsive] = []
        lost = await lost_hosts(self.store, self.settings, self.clock) if stale else {}
        for machine_id, last in stale:
            try:
                machine = await self.store.get_machine(machine_id)
            except NotFound:
                await self.store.heartbeats.forget(machine_id)
                continue
            if machine.status in TERMINAL | STOPPED_OR_STOPPING | PAUSE_STATES:
                await self.store.heartbeats.forget(machine_id)  # a start's first beat is back
            elif machine.status is S.READY:
                host = lost.get(machine.host_id or "")
                if event := await self._mark(machine_id, last, now, host):
                    marked.append(event)
        await self.bus.publish_many(marked)  # independent events: pipelined, not one by one

    async def _mark(
        self, machine_id: str, last: float, now: float, host_lost: str | None = None
    ) -> MachineUnresponsive | None:
        reason = f"no heartbeat for {now - last:.0f}s"
        if host_lost:
            reason += f" ({host_lost})"
        return await mark_unresponsive(self.store, machine_id, reason, last)
