"""A machine whose daemon never reports ready fails at the boot stage; it does not hang. The
watchdog asks the machine's host whether its daemon runs before it fails it (``host.daemonRuns``,
over NATS, answered by the host's provisioner). Its rules on a manual clock:
tests/fast/test_boot_deadline.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec

from contracts.bus import subjects
from contracts.bus.consumers import Durable
from contracts.bus.events import MachineFailed, MachineProvisioned
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.host_call import HostLiveness
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from services.prober.__main__ import build as prober
from tests.conftest import new_ready_machine
from tests.waiters import Inbox, subscribed, wait_until


@asynccontextmanager
async def watched_machine(
    settings: Settings, store: Store, bus: Bus
) -> AsyncIterator[tuple[str, Inbox]]:
    """A booting machine whose `provisioned` event the prober (boot timeout 1 s, and no more
    time for a host that cannot tell: this one has no provisioner) has received, and an inbox
    of its `machine.failed` events."""
    inst = await store.create_instance("watchdog")
    m = await store.create_machine(inst.id, "local")
    await store.transition(m.id, S.PROVISIONING, "starting")
    await store.transition(m.id, S.BOOTING, "waiting", external_id="local:999999")
    quick = msgspec.structs.replace(settings, boot_timeout_s=1.0, boot_alive_max_s=0.0)
    async with AsyncExitStack() as es, subscribed(bus.nc, f"machine.failed.{m.id}") as failed:
        await prober(quick, es)
        await bus.publish(
            MachineProvisioned(
                event_id=new_event_id(),
                machine_id=m.id,
                provider="local",
                external_id="local:999999",
            )
        )
        yield m.id, failed


async def test_silent_daemon_fails_the_machine_at_boot(
    settings: Settings, store: Store, bus: Bus
) -> None:
    async with watched_machine(settings, store, bus) as (mid, failed):
        event = await failed.next_event(timeout=15)
    assert isinstance(event, MachineFailed)
    assert event.stage == "boot"
    machine = await store.get_machine(mid)
    assert machine.status is S.FAILED
    assert "did not report ready within 1s of being provisioned" in machine.status_reason


async def test_a_machine_that_booted_is_left_alone(
    settings: Settings, store: Store, bus: Bus
) -> None:
    async with watched_machine(settings, store, bus) as (mid, failed):
        await store.transition(mid, S.SETTING_UP, "the daemon reported ready")
        await store.transition(mid, S.PROBING, "probing")

        async def watchdog_done() -> bool:
            # The watchdog acks the provisioned event only once it has decided (the machine is
            # set up, or failed): then the event is no longer pending.
            info = await bus.js.consumer_info(subjects.STREAM_NAME, Durable.PROBER_BOOT)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_until(watchdog_done, timeout=15)
        # It decided: had it failed the machine, the status would say so before the ack.
        assert (await store.get_machine(mid)).status is S.PROBING
        assert failed.queue.empty()


async def test_the_host_of_a_machine_says_whether_its_daemon_runs(
    stack: FleetClient, stack_settings: Settings, store: Store, bus: Bus
) -> None:
    """Asked as the boot watchdog asks (over NATS, answered by the machine's host's
    provisioner): a local machine's daemon runs; stopped, it does not; a machine of a host
    with no provisioner up cannot be told of."""
    hosts = HostLiveness(bus.nc, default_host_id=stack_settings.host_id, timeout_s=10)
    mid = await new_ready_machine(stack, "liveness")
    assert await hosts.daemon_runs(await store.get_machine(mid)) is True
    await stack.stop_machine(mid)
    stopped = await stack.wait_for(mid, ["stopped", "failed"], timeout_s=60)
    assert stopped.status == "stopped", stopped.status_reason
    assert await hosts.daemon_runs(await store.get_machine(mid)) is False
    elsewhere = msgspec.structs.replace(await store.get_machine(mid), host_id="no-such-host")
    assert await hosts.daemon_runs(elsewhere) is None
