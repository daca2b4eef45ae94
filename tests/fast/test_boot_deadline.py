"""The boot deadline judges the machine, never the platform (services/prober/boot_watch.py), on
a manual clock: the time a booting machine's daemon has to report ready runs only while the
watchdog looks at it; a stop of the platform, a daemon started anew and its host's word that the
daemon runs each give it a new window; and a machine whose setup the platform's stop cut short
is set up again (the provisioner's resume, the setup pusher, the probe).

On real servers: tests/e2e/test_up_stopped_in_setup.py (`fleet up` stopped while a machine
boots, started again after longer than the deadline), tests/integration/
test_gvisor_fork_load.py (forks with memory on a loaded host)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import msgspec
import pytest

from contracts.bus.consumers import Durable
from contracts.bus.events import (
    DaemonStatusReported,
    MachineFailed,
    MachineProvisioned,
    SetupPushed,
)
from contracts.ids import new_event_id
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Permanent, Retry
from services.prober.boot_watch import boot_looks
from services.prober.service import Prober, prober as make_prober
from services.provisioner.service import SET_UP_AGAIN
from services.setup_pusher.service import DAEMON_GONE, GONE_AFTER_S
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World

TIMEOUT = 120.0
LOOK, GAP = boot_looks(TIMEOUT)


class Host:
    """A machine's host's word on whether its daemon runs (None: it cannot tell)."""

    def __init__(self, runs: bool | None) -> None:
        self.runs = runs
        self.asked: list[str] = []

    async def daemon_runs(self, machine: Machine) -> bool | None:
        self.asked.append(machine.id)
        return self.runs


def watching(world: World, clock: ManualClock, host: Host | None = None, **times: float) -> None:
    world.prober.boot.clock = clock
    world.prober.boot.hosts = host
    world.prober.boot.settings = msgspec.structs.replace(world.settings, **times)


async def booting(world: World, external_id: str = "local:1") -> Machine:
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    await world.store.transition(machine.id, S.PROVISIONING, "starting")
    await world.store.transition(machine.id, S.BOOTING, "booting", external_id=external_id)
    return machine


def provisioned(machine: Machine, clock: ManualClock) -> MachineProvisioned:
    return MachineProvisioned(event_id=new_event_id(), machine_id=machine.id, provider="local",
                              external_id=machine.external_id or "",
                              occurred_at=datetime.fromtimestamp(clock.now(), UTC))  # fmt: skip


async def look(prober: Prober, event: MachineProvisioned) -> Retry | Permanent | None:
    """One look of the watchdog at the event's machine: what it raised (None: it let go)."""
    try:
        await prober.boot.on_provisioned(event)
    except (Retry, Permanent) as exc:
        return exc
    return None


async def looked_at_until(
    prober: Prober, clock: ManualClock, event: MachineProvisioned, until: float
) -> Retry | Permanent | None:
    """Looks as the consumer redelivers the event (after each ``Retry``'s delay) until a look
    at or past ``until`` (clock time), or one that is not a Retry; that one's outcome."""
    while True:
        got = await look(prober, event)
        if not isinstance(got, Retry) or clock.now() >= until:
            return got
        assert got.budget_s == math.inf  # the event's age never ends the watch
        await clock.advance(min(got.delay_s, until - clock.now()))


async def test_a_silent_daemon_looked_at_all_along_fails_at_its_deadline_not_before(
    world: World,
) -> None:
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    start = clock.now()
    got = await looked_at_until(world.prober, clock, event, start + TIMEOUT - TICK)
    assert isinstance(got, Retry), got
    assert got.delay_s == TICK  # looked at again at the deadline
    await clock.advance(TICK)
    got = await look(world.prober, event)
    assert isinstance(got, Permanent)
    assert str(got) == ("the daemon did not report ready within 120s of being provisioned "
                        "(local:1); see the machine's daemon log")  # fmt: skip


async def test_the_time_the_platform_was_stopped_is_not_the_machines(world: World) -> None:
    """Looked at for 100 s, then nothing for 150 s (the stack was stopped): the look after is a
    new window of its own, and the machine fails only a whole window after the platform's
    return, with a reason that says so."""
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    await looked_at_until(world.prober, clock, event, clock.now() + 100)
    await clock.advance(150)  # the platform was stopped
    back = clock.now()
    got = await look(world.prober, event)
    assert isinstance(got, Retry)
    got = await looked_at_until(world.prober, clock, event, back + TIMEOUT - TICK)
    assert isinstance(got, Retry)
    await clock.advance(back + TIMEOUT - clock.now())
    got = await look(world.prober, event)
    assert isinstance(got, Permanent)
    assert "within 120s of the platform's return (it was stopped while the machine booted)" in (
        str(got)
    )


async def test_a_gap_shorter_than_missed_looks_is_the_machines_time(world: World) -> None:
    """A look late by less than the gap (a busy prober, a replica that died holding the
    event) is not a stop of the platform: the window goes on."""
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    start = clock.now()
    await looked_at_until(world.prober, clock, event, start + 60)
    await clock.advance(GAP)  # late, but not past the gap
    got = await looked_at_until(world.prober, clock, event, start + TIMEOUT)
    assert isinstance(got, Permanent)
    assert clock.now() == start + TIMEOUT
    assert "of being provisioned" in str(got)


async def test_the_first_look_at_an_old_event_is_a_window_of_its_own(world: World) -> None:
    """The watchdog's first look comes long after the event (the platform was stopped between
    the machine's start and it): the time since is not the machine's. Through the real
    consumer: the event's age does not end the watch either."""
    machine = await booting(world)
    old = MachineProvisioned(event_id=new_event_id(), machine_id=machine.id, provider="local",
                             external_id="local:1",
                             occurred_at=datetime.fromtimestamp(0, UTC))  # fmt: skip
    await world.bus.publish(old)
    await world.bus.settle()
    assert [d.durable for d in world.bus.deferred] == [Durable.PROBER_BOOT]
    assert (await world.machine(machine.id)).status is S.BOOTING
    assert world.bus.of(MachineFailed) == []


async def test_a_daemon_started_anew_gets_a_whole_window(world: World) -> None:
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    await looked_at_until(world.prober, clock, event, clock.now() + 100)
    await world.store.set_external_id(machine.id, "local:2")  # the provisioner's new start
    again = clock.now()
    got = await looked_at_until(world.prober, clock, event, again + TIMEOUT - TICK)
    assert isinstance(got, Retry)
    await clock.advance(again + TIMEOUT - clock.now())
    got = await look(world.prober, event)
    assert isinstance(got, Permanent)
    assert "within 120s of its daemon's start again (local:2)" in str(got)


async def test_prober_replicas_share_one_window(world: World) -> None:
    """Looks by two replicas in turn (each holds the event at one redelivery): one window, not
    one per replica."""
    clock = ManualClock()
    watching(world, clock)
    other = make_prober(store=world.store, bus=world.bus, daemons=world.daemons,
                        settings=world.settings, clock=clock)  # fmt: skip
    machine = await booting(world)
    event = provisioned(machine, clock)
    start = clock.now()
    replicas = [world.prober, other]
    n = 0
    while isinstance(got := await look(replicas[n % 2], event), Retry):
        n += 1
        await clock.advance(got.delay_s)
    assert isinstance(got, Permanent)
    assert clock.now() == start + TIMEOUT
    assert n > 2


async def test_a_daemon_its_host_says_runs_gets_more_windows_up_to_the_cap(
    world: World,
) -> None:
    """A slow daemon (a loaded host, a fork's restore) is not failed by the clock while its host
    says it runs; past FLEET_BOOT_ALIVE_MAX_S it is."""
    clock = ManualClock()
    host = Host(runs=True)
    watching(world, clock, host, boot_alive_max_s=300.0)
    machine = await booting(world)
    event = provisioned(machine, clock)
    start = clock.now()
    got = await looked_at_until(world.prober, clock, event, start + TIMEOUT)
    assert isinstance(got, Retry)
    assert host.asked == [machine.id]  # at the end of its first window
    got = await looked_at_until(world.prober, clock, event, start + TIMEOUT + 300 - TICK)
    assert isinstance(got, Retry)
    assert (await world.machine(machine.id)).status is S.BOOTING
    got = await looked_at_until(world.prober, clock, event, start + 2 * TIMEOUT + 300)
    assert isinstance(got, Permanent)
    assert "its host said it runs, or could not tell, for 300s more" in str(got)
    assert clock.now() - start <= TIMEOUT + 300 + TIMEOUT


async def test_a_daemon_its_host_says_is_not_running_fails_at_the_deadline(
    world: World,
) -> None:
    clock = ManualClock()
    host = Host(runs=False)
    watching(world, clock, host)
    machine = await booting(world)
    event = provisioned(machine, clock)
    got = await looked_at_until(world.prober, clock, event, clock.now() + TIMEOUT)
    assert isinstance(got, Permanent)
    assert str(got).endswith("; its daemon is not running on its host")


async def test_a_host_that_cannot_be_asked_is_waited_for(world: World) -> None:
    """No provisioner of its host answers (it is starting again after the platform's stop):
    the platform cannot hear the machine, so its deadline is not the machine's yet."""
    clock = ManualClock()
    host = Host(runs=None)
    watching(world, clock, host)
    machine = await booting(world)
    event = provisioned(machine, clock)
    got = await looked_at_until(world.prober, clock, event, clock.now() + TIMEOUT + LOOK)
    assert isinstance(got, Retry)
    assert host.asked == [machine.id]


async def test_the_window_holds_while_the_machine_sets_up(world: World) -> None:
    """Its daemon reported (setting up): watched on, its window held (a long clone is not
    booting time); its daemon gone then (back to booting), the window goes on where it was."""
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    start = clock.now()
    await looked_at_until(world.prober, clock, event, start + 100)
    await world.store.transition(machine.id, S.SETTING_UP, "pushing")
    got = await look(world.prober, event)
    assert isinstance(got, Retry)
    assert got.budget_s == math.inf
    held = await looked_at_until(world.prober, clock, event, clock.now() + 500)
    assert isinstance(held, Retry)  # a long clone: not the boot deadline's business
    await world.store.transition(machine.id, S.BOOTING, DAEMON_GONE)
    again = clock.now()
    got = await looked_at_until(world.prober, clock, event, again + 20 - TICK)
    assert isinstance(got, Retry)
    await clock.advance(TICK)
    got = await look(world.prober, event)
    assert isinstance(got, Permanent)  # 100 s booting before, 20 s after
    assert "of being provisioned" in str(got)
    await world.store.transition(machine.id, S.SETTING_UP, "pushing")
    await world.store.transition(machine.id, S.PROBING, "probing")
    assert await look(world.prober, event) is None  # set up: the watch ends


async def test_a_machine_setting_up_before_the_first_look_has_no_window_yet(
    world: World,
) -> None:
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world)
    event = provisioned(machine, clock)
    await world.store.transition(machine.id, S.SETTING_UP, "pushing")
    assert isinstance(await look(world.prober, event), Retry)
    assert not await world.store.redis.exists(world.store.keys.k_boot_watch(machine.id))


# --- a setup the platform's stop cut short ------------------------------------------------------
async def in_setup(world: World, status: S) -> Machine:
    """A machine the pipeline left at ``status`` when the platform stopped: its daemon gone
    with it (the stack's stop ends every machine), its external id the old daemon's."""
    machine = await world.ready_machine()
    key = world.store.keys.k_machine(machine.id)
    await world.store.redis.hset(key, mapping={"status": status.value, "externalId": "local:old"})
    await world.provider.stop(machine.id)
    world.bus.events.clear()
    return await world.machine(machine.id)


@pytest.mark.parametrize("status", [S.BOOTING, S.SETTING_UP, S.PROBING])
async def test_a_machine_the_platform_stopped_during_setup_is_set_up_again(
    world: World, status: S
) -> None:
    machine = await in_setup(world, status)
    assert await world.provisioner.resume() == 1
    got = await world.machine(machine.id)
    assert got.status is S.BOOTING
    if status is not S.BOOTING:
        assert got.status_reason.startswith(SET_UP_AGAIN)
    [again] = world.bus.of(MachineProvisioned, machine.id)  # its new daemon's window
    assert again.external_id == got.external_id != "local:old"
    await world.bus.settle()
    got = await world.machine(machine.id)
    assert got.status is S.READY, got.status_reason
    assert world.bus.of(MachineFailed) == []


async def test_a_report_whose_daemon_is_gone_sends_the_machine_back_to_booting(
    world: World,
) -> None:
    """The old daemon's ready report, delivered after the platform's return: its daemon is
    gone (the new one not yet connected). The machine is not failed: it boots again (the boot
    watchdog judges it), and the report is tried again later: once a daemon answers (the new
    one, or one that reconnected after NATS restarted), it sets the machine up."""
    clock = ManualClock()
    world.setup.clock = clock
    machine = await booting(world)
    world.daemons.boot(machine.id).mode = "unavailable"
    report = DaemonStatusReported(event_id=new_event_id(), machine_id=machine.id, status="ready",
                                  version="0.1.0", boot_id=new_event_id())  # fmt: skip
    pushing = asyncio.ensure_future(world.setup.on_status(report))
    await clock.advance(GONE_AFTER_S - TICK)
    assert not pushing.done()  # a daemon a moment away (a cluster's routes) is waited for
    await clock.advance(1.0)
    with pytest.raises(Retry) as later:  # tried again later, however old
        await asyncio.wait_for(pushing, 10)
    assert later.value.budget_s == math.inf
    got = await world.machine(machine.id)
    assert (got.status, got.status_reason) == (S.BOOTING, DAEMON_GONE)
    assert world.bus.of(SetupPushed) == []
    world.daemons[machine.id].mode = "up"  # back (reconnected, or a new daemon)
    await world.setup.on_status(report)  # the redelivery
    assert (await world.machine(machine.id)).status is S.SETTING_UP
    assert world.bus.of(SetupPushed, machine.id)


async def test_a_probe_of_a_machine_sent_back_to_booting_stops_without_failing_it(
    world: World,
) -> None:
    machine = await world.ready_machine()
    [pushed] = world.bus.of(SetupPushed, machine.id)
    key = world.store.keys.k_machine(machine.id)
    await world.store.redis.hset(key, "status", S.PROBING.value)
    world.daemons[machine.id].mode = "unavailable"  # its daemon gone with the platform
    probing = asyncio.ensure_future(world.prober.probe.on_setup_pushed(pushed))
    await asyncio.sleep(0)
    await world.store.transition(machine.id, S.BOOTING, SET_UP_AGAIN)
    await asyncio.wait_for(probing, 10)  # no Permanent: it left probing
    assert (await world.machine(machine.id)).status is S.BOOTING


async def test_an_earlier_boots_watch_never_fails_the_machine_started_since(
    world: World,
) -> None:
    """A start killed while it booted left its watch; the machine failed and was started again
    (another daemon): the old watch lets go at its next look, past its own deadline too, and
    only the new start's judges the machine (its start just asked was failed at once)."""
    clock = ManualClock()
    watching(world, clock)
    machine = await booting(world, external_id="local:2")
    old = msgspec.structs.replace(provisioned(machine, clock), external_id="local:1")
    await clock.advance(TIMEOUT + LOOK)
    assert await look(world.prober, old) is None
    assert (await world.store.get_machine(machine.id)).status is S.BOOTING
    current = msgspec.structs.replace(old, event_id=new_event_id(), external_id="local:2")
    assert isinstance(await look(world.prober, current), Retry)
