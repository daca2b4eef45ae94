"""The provisioner's rules: machine.created -> token once, provider start, provisioned;
machine.archived -> revoke, stop."""

from __future__ import annotations

from contracts.bus.consumers import Durable
from contracts.bus.events import (
    DaemonStatusReported,
    MachineArchived,
    MachineCreated,
    MachineFailed,
    MachineProvisioned,
    MachineUnresponsive,
)
from contracts.bus.subjects import EventKind as K
from contracts.errors import NotSupported, ProviderError
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from tests.fast.conftest import World


async def created(world: World, provider: str = "local") -> MachineCreated:
    """A machine record and its machine.created, as the gateway makes them (not yet handled)."""
    inst = await world.instance()
    machine = await world.store.create_machine(inst.id, "local")
    event = MachineCreated(event_id=new_event_id(), machine_id=machine.id, instance_id=inst.id,
                           provider=provider)  # fmt: skip
    await world.bus.publish(event)
    return event


async def test_created_mints_a_token_once_starts_the_machine_and_announces_it(world: World) -> None:
    world.provider.report_ready = False  # this stage alone: no daemon report follows
    event = await created(world)
    await world.bus.settle()

    machine = await world.machine(event.machine_id)
    assert machine.status is S.BOOTING
    assert machine.external_id == f"local:{machine.id}"
    [(started_id, token)] = world.provider.starts
    assert started_id == machine.id
    sealed = await world.store.machine_secret(machine.id)
    assert sealed is not None
    assert world.box.decrypt(sealed) == token
    provisioned = world.bus.one(MachineProvisioned, machine.id)
    assert (provisioned.provider, provisioned.external_id) == ("local", machine.external_id)


async def test_a_redelivered_created_reuses_the_token_and_announces_the_same_event(
    world: World,
) -> None:
    world.provider.report_ready = False
    event = await created(world)
    await world.bus.settle()
    await world.bus.redeliver(event, Durable.PROVISIONER)
    await world.bus.settle()

    # Booting with an external id: it announces again (same derived id: dropped as duplicate),
    # and asks the provider's idempotent start again with the same token: a machine that runs
    # is left be.
    assert world.bus.kinds(event.machine_id) == [K.CREATED, K.PROVISIONED]
    assert world.bus.duplicates == 1
    [first, again] = world.provider.starts
    assert first == again
    assert (await world.machine(event.machine_id)).external_id == f"local:{event.machine_id}"


async def test_a_redelivered_created_starts_a_booting_machine_whose_daemon_is_gone(
    world: World,
) -> None:
    """A delivery ended between the start and the daemon's first word (a provisioner killed
    after claiming a pooled machine, before telling it who it is): the redelivery starts it
    afresh, and the daemon reports ready."""
    world.provider.report_ready = False
    event = await created(world)
    await world.bus.settle()
    world.provider.daemons[event.machine_id].mode = "unavailable"  # it never came up
    world.provider.report_ready = True
    await world.bus.redeliver(event, Durable.PROVISIONER)
    await world.bus.settle()
    assert len(world.provider.starts) == 2
    assert (await world.machine(event.machine_id)).status is S.READY


async def test_a_token_claimed_by_another_replica_is_the_one_used(world: World) -> None:
    world.provider.report_ready = False
    event = await created(world)
    await world.store.claim_machine_secret(event.machine_id, world.box.encrypt("theirs"))
    await world.bus.settle()
    assert world.provider.starts == [(event.machine_id, "theirs")]


async def test_crash_between_start_and_booting_starts_again_idempotently(world: World) -> None:
    world.provider.report_ready = False
    event = await created(world)
    await world.store.transition(event.machine_id, S.PROVISIONING, "crashed mid-start")
    await world.bus.settle()
    assert (await world.machine(event.machine_id)).status is S.BOOTING
    assert len(world.bus.of(MachineProvisioned)) == 1


async def test_a_start_in_progress_elsewhere_defers_the_event(world: World) -> None:
    world.provider.report_ready = False
    event = await created(world)
    async with world.store.locks.hold(f"provision:{event.machine_id}", ttl_s=10):
        await world.bus.settle()  # deferred: it waits for the lock
        # (once per round of the fake bus: the placement watchdog's delivery adds a round)
        assert set(world.bus.outcomes(Durable.PROVISIONER)) == {"deferred"}
        assert world.provider.starts == []
    await world.bus.settle()  # lock released: the deferred delivery goes through
    assert (await world.machine(event.machine_id)).status is S.BOOTING


async def test_provider_failure_fails_the_machine_at_stage_provision(world: World) -> None:
    world.provider.fail_start = ProviderError("no capacity left")
    event = await created(world)
    await world.bus.settle()

    machine = await world.machine(event.machine_id)
    assert machine.status is S.FAILED
    assert machine.status_reason == "provision failed: ProviderError: no capacity left"
    failed = world.bus.one(MachineFailed, event.machine_id)
    assert (failed.stage, failed.reason) == ("provision", "ProviderError: no capacity left")
    # Retried up to max_deliver, then given up once.
    assert world.bus.outcomes(Durable.PROVISIONER) == ["error", "error", "gave_up"]
    assert len(world.provider.starts) == world.settings.max_deliver


async def test_a_provider_refusing_the_machine_by_name_fails_it_at_once(world: World) -> None:
    """NotSupported from the provider's start: no retry can help (docs/runtimes.md: "refused
    at once"), so the machine fails on the first attempt, never started again."""
    world.provider.fail_start = NotSupported("this host cannot run a gvisor machine")
    event = await created(world)
    await world.bus.settle()

    failed = world.bus.one(MachineFailed, event.machine_id)
    assert (failed.stage, failed.reason) == (
        "provision", "NotSupported: this host cannot run a gvisor machine")  # fmt: skip
    assert world.bus.outcomes(Durable.PROVISIONER) == ["gave_up"]
    assert len(world.provider.starts) == 1


async def test_an_unknown_provider_fails_at_once(world: World) -> None:
    event = await created(world, provider="nowhere")
    await world.bus.settle()
    failed = world.bus.one(MachineFailed, event.machine_id)
    assert failed.reason == "no provider named 'nowhere' is configured"
    assert world.bus.outcomes(Durable.PROVISIONER) == ["gave_up"]


async def test_created_for_a_machine_past_provisioning_is_skipped(world: World) -> None:
    event = await created(world)
    await world.store.transition(event.machine_id, S.ARCHIVING, "archived before it started")
    await world.bus.settle()
    assert world.provider.starts == []
    assert world.bus.kinds(event.machine_id) == [K.CREATED]


async def test_archived_revokes_kicks_and_stops(world: World) -> None:
    machine = await world.ready_machine()
    world.bus.fake_nc.connect_machine(machine.id, cid=42)
    await world.store.transition(machine.id, S.ARCHIVING, "archived by request")
    await world.bus.publish(
        MachineArchived(event_id=new_event_id(), machine_id=machine.id, reason="by request")
    )
    await world.bus.settle()

    assert world.provider.removes == [machine.id]
    assert (await world.store.machine_access(machine.id)).revoked
    assert world.bus.fake_nc.kicked == [(machine.id, 42)]
    assert world.daemons[machine.id].mode == "unavailable"


async def test_a_removal_that_keeps_failing_leaves_the_machine_archiving(
    world: World,
) -> None:
    machine = await world.ready_machine()

    async def broken_stop(machine_id: str) -> None:
        raise ProviderError("engine unreachable")

    world.provider.remove = broken_stop  # type: ignore[method-assign]
    await world.store.transition(machine.id, S.ARCHIVING, "archived by request")
    await world.bus.publish(
        MachineArchived(event_id=new_event_id(), machine_id=machine.id, reason="by request")
    )
    await world.bus.settle()
    assert world.bus.outcomes(Durable.PROVISIONER_ARCHIVE) == ["error", "error", "gave_up"]
    # Not archived: its files may still be there (archiving it again tries again).
    assert (await world.machine(machine.id)).status is S.ARCHIVING
    assert world.bus.of(MachineFailed) == []


async def test_resume_restarts_live_machines_with_their_stored_token(world: World) -> None:
    machine = await world.ready_machine()
    [(_, token)] = world.provider.starts
    world.daemons[machine.id].mode = "unavailable"  # the host rebooted
    await world.store.set_external_id(machine.id, "stale")
    assert await world.provisioner.resume() == 1
    assert world.provider.starts[-1] == (machine.id, token)
    assert (await world.machine(machine.id)).external_id == f"local:{machine.id}"
    # The daemon came back: it reports ready again, and nothing is set up twice.
    assert len(world.bus.of(DaemonStatusReported, machine.id)) == 2


async def test_a_machine_whose_daemon_resume_starts_anew_is_not_ready_until_it_beats(
    world: World,
) -> None:
    """A host rebooted under a ready machine: the daemon its provisioner starts again does
    not serve yet, so the machine reads unresponsive until that daemon's first heartbeat."""
    machine = await world.ready_machine()
    world.daemons[machine.id].mode = "unavailable"  # the host rebooted
    await world.store.set_external_id(machine.id, "stale")
    assert await world.provisioner.resume() == 1
    again = await world.machine(machine.id)
    assert again.status is S.UNRESPONSIVE
    assert again.status_reason == "its daemon was started again"
    [event] = world.bus.of(MachineUnresponsive, machine.id)
    assert event.reason == again.status_reason
