"""Wake on access (docs/stop-start.md#wake-on-access): a call that needs a paused machine
resumes it, and one that needs a stopped machine starts it, within the call; ``by`` of the
events names the call (``contracts.bus.events.WakeBy``). ``FLEET_WAKE_ON_ACCESS=false`` turns it
off: such a call is refused at once, as before.

No wake is run twice: the resume and the start are the same compare-and-set status changes
``machines.resume`` and ``machines.start`` make, so of many calls at once (on any gateway
replica) one moves the machine and publishes, and every one waits for it to be ready. A resume
and a start pass the checks ``machines.resume`` and ``machines.start`` make (the instance's
running limit, its host's room: services/gateway/rpc/admission.py); a call refused there is
answered with their refusal, and nothing wakes.

Ready means the daemon answers (a resumed machine is ``ready`` only once its daemon answers:
services/provisioner/pause.py); the wait still asks it, as for a started one.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

import structlog
from aiohttp import web

from base.clock import SYSTEM_CLOCK, Clock
from base.retry import Backoff, Retries, retry
from contracts.bus.events import WakeBy
from contracts.daemon import rpc as d
from contracts.errors import DaemonTimeout, PortUnreachable
from contracts.models import Machine
from contracts.status import ASLEEP, COMING_UP, STOPPED_OR_STOPPING, MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.store import Store
from services.gateway.auth import Access, Caller
from services.gateway.errors_http import page_load
from services.gateway.rpc.admission import wake_up

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: The daemon methods that wake their machine, by what they are (``wakes`` on their specs);
#: any other (a look, such as ``process.list``, ``daemonLog`` or ``session.list``, which the
#: console asks when it shows a machine) never does.
WAKES: dict[str, WakeBy] = {s.name: WakeBy(s.wakes) for s in d.DAEMON_METHODS if s.wakes}

#: How often a waiting call looks at the machine's status again (and asks its daemon); a
#: resume is done in a fraction of a second, and each look later than its end is time added
#: to it: a resuming machine is looked at every ``POLL_S``.
POLL_S = 0.02
POLL_CAP_S = 0.1
_POLL = Backoff(base=POLL_S, cap=POLL_CAP_S)
_RESUMING_POLL = Backoff(base=POLL_S, cap=POLL_S, jitter=False)
#: A browser's preview waits this long for its machine before it gets the "waking" page,
#: which loads itself again after ``WAKING_PAGE_REFRESH_S``.
WAKING_PAGE_AFTER_S = 1.0
WAKING_PAGE_REFRESH_S = 1
#: After a wake, a preview or tunnel whose port nothing listens on yet tries again for this
#: long: the machine's program (a restarted dev server) may take a moment to listen.
WOKEN_PORT_WAIT_S = 15.0


class Step(StrEnum):
    """What a wake does next, given the machine's status (``next_step``)."""

    READY = "ready"
    RESUME = "resume"
    START = "start"
    WAIT = "wait"
    #: Nothing a wake can help (failed, archived, unresponsive): the call goes on and meets
    #: the machine as it is.
    GIVE_UP = "give-up"


def next_step(status: S) -> Step:
    if status is S.READY:
        return Step.READY
    if status is S.PAUSED:
        return Step.RESUME
    if status in STOPPED_OR_STOPPING:  # a start overtakes a stop under way
        return Step.START
    if status in {S.PAUSING, S.RESUMING} | COMING_UP:
        return Step.WAIT
    return Step.GIVE_UP


def wants_waking_page(method: str, accept: str) -> bool:
    """A browser's page load (``page_load``): what a preview answers with the "waking" page,
    rather than hold, when its machine is not awake within ``WAKING_PAGE_AFTER_S``. Anything
    else (a script's fetch, an API client) is held."""
    return page_load(method, accept)


def waking_page(machine_id: str, status: str) -> web.Response:
    """The page a browser gets while a preview's machine wakes: it loads itself again."""
    text = html.escape(f"Machine {machine_id} is waking up ({status})")
    refresh = f'<meta http-equiv="refresh" content="{WAKING_PAGE_REFRESH_S}">'
    body = (f'<!doctype html><meta charset="utf-8">{refresh}<title>Waking up</title>'
            f"<p>{text}&hellip;</p>\n")  # fmt: skip
    return web.Response(status=200, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store"})  # fmt: skip


class Waker:
    """Wakes a caller's machine (see the module); ``enabled`` is ``FLEET_WAKE_ON_ACCESS``.
    Its deadline and its polls are ``clock``'s time (a test's manual clock)."""

    def __init__(self, *, store: Store, bus: Bus, daemons: DaemonClient, enabled: bool,
                 timeout_s: float, clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self.store = store
        self.bus = bus
        self.daemons = daemons
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.clock = clock

    async def needed(self, machine: Machine) -> bool:
        """Whether a call on ``machine`` must wake it (or wait for its wake) first."""
        if machine.status in ASLEEP:
            return True
        return machine.status in COMING_UP and await self.store.stops.done(machine.id)

    async def kick(self, machine: Machine, by: WakeBy) -> Machine:
        """Ask for the machine's resume or start, once; the machine as it is now."""
        step = next_step(machine.status)
        if step not in (Step.RESUME, Step.START):
            return machine
        t = await wake_up(self.store, self.bus, machine, f"woken by {by.value}", by)
        if t is not None and t.moved:
            event = "wake.resume" if step is Step.RESUME else "wake.start"
            log.info(event, machine_id=machine.id, by=by.value)
        return await self.store.get_machine(machine.id)

    async def wake(self, machine: Machine, by: WakeBy, within_s: float | None = None) -> Machine:
        """The machine once it is ready and its daemon answers; DaemonTimeout after
        ``within_s`` (by default ``FLEET_WAKE_TIMEOUT_S``). A machine no wake can help is
        returned as it is."""
        limit = self.timeout_s if within_s is None else within_s
        began = self.clock.monotonic()
        # One budget for both waits; the last pause is what is left of it.
        pauses = Retries(_POLL, budget_s=limit, clip=True, clock=self.clock)
        resuming = Retries(_RESUMING_POLL, budget_s=limit, clip=True, clock=self.clock)
        while (step := next_step(machine.status)) is not Step.READY:
            if step is Step.GIVE_UP:
                return machine
            if step is not Step.WAIT:
                machine = await self.kick(machine, by)
                continue
            await self._pause(machine, resuming if machine.status is S.RESUMING else pauses,
                              limit)  # fmt: skip
            machine = await self.store.get_machine(machine.id)
        # Ready: its daemon, reconnecting as it was restored, answers within moments, and is
        # asked again from the shortest wait on (what is left of the one budget).
        left = limit - (self.clock.monotonic() - began)
        pauses = Retries(_POLL, budget_s=max(0.0, left), clip=True, clock=self.clock)
        while not await self._answers(machine.id):
            await self._pause(machine, pauses, limit)
        log.info("wake.ready", machine_id=machine.id, by=by.value,
                 ms=round((self.clock.monotonic() - began) * 1000))  # fmt: skip
        return machine

    async def _pause(self, machine: Machine, pauses: Retries, limit: float) -> None:
        if not await pauses.pause():
            raise DaemonTimeout(
                f"machine {machine.id} is still {machine.status.value} after {limit:g}s of "
                "waking it: the call was not sent; send it again",
                data={"status": machine.status.value},
            )

    async def _answers(self, machine_id: str) -> bool:
        return await self.daemons.answers(machine_id)


async def wake_for(access: Access, caller: Caller, machine_id: str, by: WakeBy,
                   within_s: float | None) -> bool | None:  # fmt: skip
    """Wake the caller's machine for a port's call (a preview, a tunnel) before it is opened:
    True if it was asleep (or waking) and answers now, False if it was awake already (or wake
    on access is off: the call meets it as it is), None if it did not answer within
    ``within_s`` (None: ``FLEET_WAKE_TIMEOUT_S``, then DaemonTimeout)."""
    waker = access.waker
    if waker is None or not waker.enabled:
        return False
    machine = await access.machine(caller, machine_id)
    if not await waker.needed(machine):
        return False
    try:
        await waker.wake(machine, by, within_s)
    except DaemonTimeout:
        if within_s is None:
            raise
        return None
    return True


async def open_woken(open_: Callable[[], Awaitable[T]], woken: bool,
                     clock: Clock = SYSTEM_CLOCK) -> T:  # fmt: skip
    """``open_()``; once its machine was just woken, tried again while its port is unreachable,
    for up to ``WOKEN_PORT_WAIT_S`` of ``clock``'s time: the program behind it may not listen
    yet."""
    if not woken:
        return await open_()
    return await retry(open_, on=PortUnreachable, backoff=Backoff(base=0.05, cap=0.5),
                       budget_s=WOKEN_PORT_WAIT_S, clip=True, clock=clock)  # fmt: skip
